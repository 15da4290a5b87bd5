// Package vectabase holds the domain types every layer shares: the error type
// with its codes. It has no dependencies, so any package may import it.
package vectabase

import (
	"errors"
	"fmt"
)

// Error codes. Each maps to one HTTP status in server's error handler.
const (
	EBADREQUEST      = "BAD_REQUEST"
	EVALIDATION      = "VALIDATION_FAILED"
	EUNAUTHORIZED    = "UNAUTHORIZED"
	EFORBIDDEN       = "FORBIDDEN"
	ENOTFOUND        = "NOT_FOUND"
	ECONFLICT        = "CONFLICT"
	EPAYLOADTOOLARGE = "PAYLOAD_TOO_LARGE"
	// EUNSUPPORTEDMEDIA is a request body in a Content-Encoding the API
	// does not decode (unknown, or more than one stacked).
	EUNSUPPORTEDMEDIA = "UNSUPPORTED_MEDIA_TYPE"
	// EHEADERSTOOLARGE is a request whose headers pass HTTP_MAX_HEADER_BYTES.
	EHEADERSTOOLARGE = "REQUEST_HEADERS_TOO_LARGE"
	ERATELIMITED     = "RATE_LIMITED"
	EINTERNAL        = "INTERNAL"
	EUNAVAILABLE     = "UNAVAILABLE"
	// EINSUFFICIENTCREDITS: a developer's obfuscation credits do not cover
	// a consumption (402).
	EINSUFFICIENTCREDITS = "INSUFFICIENT_CREDITS"
)

// Error is an application error: a code from the list above and a message
// that is safe to show to the caller. It never carries secret values; the
// wrapped error (if any) is for logs only and is never sent to a client.
type Error struct {
	Code    string
	Message string
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WrapError returns an *Error with code and message that wraps err for logs.
func WrapError(code, message string, err error) *Error {
	return &Error{Code: code, Message: message, Err: err}
}

// ErrorCode returns the code of the first *Error in err's chain, or
// EINTERNAL when there is none.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the client-safe message of the first *Error in err's
// chain, or a generic message for unknown errors (which may hold details that
// must not leave the server).
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// WrapInternal answers err as INTERNAL with no detail, unless something in
// its chain already says the service is UNAVAILABLE (a saturated audit
// writer, a database restarting): that stays a 503 the client may retry,
// with its own client-safe message. err is kept for the logs either way.
func WrapInternal(err error) *Error {
	if ErrorCode(err) == EUNAVAILABLE {
		return WrapError(EUNAVAILABLE, ErrorMessage(err), err)
	}
	return WrapError(EINTERNAL, "internal error", err)
}
