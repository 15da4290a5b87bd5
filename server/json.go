package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/vectabase/vectabase"
)

// DecodeJSON decodes the request body into v strictly: one JSON value,
// no unknown fields. Its errors are BAD_REQUEST with a message that names
// the problem and the field but never echoes a value from the body.
func DecodeJSON(c *fiber.Ctx, v any) error {
	body := c.Body()
	if len(bytes.TrimSpace(body)) == 0 {
		return vectabase.Errorf(vectabase.EBADREQUEST, "request body must be a JSON object")
	}
	ct := strings.ToLower(c.Get(fiber.HeaderContentType))
	if ct != "" && !strings.HasPrefix(ct, fiber.MIMEApplicationJSON) {
		return vectabase.Errorf(vectabase.EBADREQUEST, "Content-Type must be application/json")
	}
	return decodeStrict(body, v)
}

func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return vectabase.Errorf(vectabase.EBADREQUEST, "%s", describeJSONError(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return vectabase.Errorf(vectabase.EBADREQUEST, "request body must hold exactly one JSON value")
	}
	return nil
}

func describeJSONError(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("malformed JSON at offset %d", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("%s: must be %s", typ.Field, jsonKind(typ.Type.Kind().String()))
		}
		return fmt.Sprintf("request body must be %s", jsonKind(typ.Type.Kind().String()))
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "malformed JSON: unexpected end of input"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name, uerr := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		// A key is echoed only when it looks like a field name: a long or
		// odd one may be a secret sent in the wrong place.
		if uerr != nil || !fieldName.MatchString(name) {
			return "unknown field"
		}
		return "unknown field " + strconv.Quote(name)
	}
	return "malformed JSON"
}

var fieldName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,23}$`)

func jsonKind(k string) string {
	switch k {
	case "struct", "map":
		return "an object"
	case "slice", "array":
		return "an array"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	}
	return "of another type"
}
