package marketplace

import (
	"encoding/json"
	"reflect"
)

// Field is a JSON field that tells absent, null and a value apart, for
// partial updates where null clears a column.
type Field[T any] struct {
	Set   bool // present in the body
	Null  bool // present as null
	Value T
}

// UnmarshalJSON records presence. A value of the wrong type is reported as
// an UnmarshalTypeError, so the decoder names the field in its message.
func (f *Field[T]) UnmarshalJSON(b []byte) error {
	f.Set = true
	if string(b) == "null" {
		f.Null = true
		return nil
	}
	if err := json.Unmarshal(b, &f.Value); err != nil {
		return &json.UnmarshalTypeError{Value: "value", Type: reflect.TypeOf(f.Value)}
	}
	return nil
}

// Ptr is the value when set and not null, else nil.
func (f Field[T]) Ptr() *T {
	if !f.Set || f.Null {
		return nil
	}
	v := f.Value
	return &v
}
