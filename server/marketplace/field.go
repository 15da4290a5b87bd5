package marketplace

import (
	"encoding/json"
	"reflect"
	"strconv"
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

// RobloxID is a Roblox user id that accepts a JSON number or a string of
// digits: game servers (Lua) often send ids as strings.
type RobloxID int64

// UnmarshalJSON accepts 123 and "123". Anything else is reported as an
// UnmarshalTypeError, so the decoder names the field.
func (r *RobloxID) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return &json.UnmarshalTypeError{Value: "value", Type: reflect.TypeOf(int64(0))}
	}
	*r = RobloxID(n)
	return nil
}

func (r *RobloxID) int64Ptr() *int64 {
	if r == nil {
		return nil
	}
	n := int64(*r)
	return &n
}
