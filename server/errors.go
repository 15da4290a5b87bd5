package server

import (
	"errors"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/store"
)

// ErrorBody is the contract's error body: every failure answers with it.
type ErrorBody struct {
	Error     string `json:"error"`
	Message   string `json:"message"`
	RequestID string `json:"requestId"`
	Timestamp string `json:"timestamp"`
}

var statusOf = map[string]int{
	vectabase.EBADREQUEST:       fiber.StatusBadRequest,
	vectabase.EVALIDATION:       fiber.StatusBadRequest,
	vectabase.EUNAUTHORIZED:     fiber.StatusUnauthorized,
	vectabase.EFORBIDDEN:        fiber.StatusForbidden,
	vectabase.ENOTFOUND:         fiber.StatusNotFound,
	vectabase.ECONFLICT:         fiber.StatusConflict,
	vectabase.EPAYLOADTOOLARGE:  fiber.StatusRequestEntityTooLarge,
	vectabase.ERATELIMITED:      fiber.StatusTooManyRequests,
	vectabase.EUNSUPPORTEDMEDIA: fiber.StatusUnsupportedMediaType,
	vectabase.EHEADERSTOOLARGE:  fiber.StatusRequestHeaderFieldsTooLarge,
	vectabase.EINTERNAL:         fiber.StatusInternalServerError,
	vectabase.EUNAVAILABLE:      fiber.StatusServiceUnavailable,

	vectabase.EINSUFFICIENTCREDITS: fiber.StatusPaymentRequired,
}

// StatusOf returns the HTTP status for an error code.
func StatusOf(code string) int {
	if s, ok := statusOf[code]; ok {
		return s
	}
	return fiber.StatusInternalServerError
}

// fiberErrorCodes maps the errors Fiber raises by itself (no route, body too
// large, bad method) to our codes.
func fromFiberError(fe *fiber.Error) *vectabase.Error {
	switch fe.Code {
	case fiber.StatusNotFound:
		return vectabase.Errorf(vectabase.ENOTFOUND, "no such route")
	case fiber.StatusMethodNotAllowed:
		return vectabase.Errorf(vectabase.ENOTFOUND, "no such route")
	case fiber.StatusRequestEntityTooLarge:
		return vectabase.Errorf(vectabase.EPAYLOADTOOLARGE, "request body is larger than the limit")
	case fiber.StatusUnsupportedMediaType:
		return vectabase.Errorf(vectabase.EUNSUPPORTEDMEDIA, "unsupported media type")
	case fiber.StatusRequestHeaderFieldsTooLarge:
		return vectabase.Errorf(vectabase.EHEADERSTOOLARGE, "request headers are larger than the limit")
	case fiber.StatusRequestTimeout:
		return vectabase.Errorf(vectabase.EUNAVAILABLE, "request timed out")
	case fiber.StatusTooManyRequests:
		return vectabase.Errorf(vectabase.ERATELIMITED, "too many requests")
	case fiber.StatusUnauthorized:
		return vectabase.Errorf(vectabase.EUNAUTHORIZED, "authentication required")
	case fiber.StatusForbidden:
		return vectabase.Errorf(vectabase.EFORBIDDEN, "forbidden")
	case fiber.StatusServiceUnavailable:
		return vectabase.Errorf(vectabase.EUNAVAILABLE, "service unavailable")
	}
	if fe.Code >= 400 && fe.Code < 500 {
		return vectabase.Errorf(vectabase.EBADREQUEST, "bad request")
	}
	return vectabase.Errorf(vectabase.EINTERNAL, "internal error")
}

// errorHandler is the one place errors become HTTP responses. Known errors
// answer with their code and message; anything else is logged with the
// request id and answered as INTERNAL with no detail.
func errorHandler(log zerolog.Logger) fiber.ErrorHandler {
	return func(c *fiber.Ctx, err error) error {
		var ae *vectabase.Error
		var fe *fiber.Error
		switch {
		case errors.As(err, &ae):
		case errors.As(err, &fe):
			ae = fromFiberError(fe)
		default:
			ae = vectabase.Errorf(vectabase.EINTERNAL, "internal error")
		}
		if ae.Code == vectabase.EINTERNAL && store.Unavailable(err) {
			// The database is down, restarting or failing over: a client
			// may retry, so say so instead of INTERNAL.
			log.Warn().Str("requestId", RequestID(c)).Str("route", routeOf(c)).
				Str("error", errorTextForLog(err)).Msg("database unavailable")
			ae = vectabase.Errorf(vectabase.EUNAVAILABLE, "the database is unavailable; retry later")
		}
		if ae.Code == vectabase.EINTERNAL && errors.Is(err, keyring.ErrKEKUnavailable) {
			// Vault or the KMS is sealed or unreachable: serving goes on
			// from the keysets already unwrapped, and what needs the KEK
			// says it may work later.
			log.Warn().Str("requestId", RequestID(c)).Str("route", routeOf(c)).
				Str("error", errorTextForLog(err)).Msg("KEK unavailable")
			ae = vectabase.Errorf(vectabase.EUNAVAILABLE, "the key-encryption key service (Vault or KMS) is unavailable; retry later")
		}
		if ae.Code == vectabase.EINTERNAL {
			// Log only the error's type and chain text from our own code;
			// values never appear in our error messages.
			log.Error().Str("requestId", RequestID(c)).Str("route", routeOf(c)).
				Str("error", errorTextForLog(err)).Msg("internal error")
			ae = vectabase.Errorf(vectabase.EINTERNAL, "internal error")
		}
		status := StatusOf(ae.Code)
		id := RequestID(c)
		if id == "" {
			id = newRequestID()
			c.Locals(localRequestID, id)
		}
		c.Set(HeaderRequestID, id)
		if ae.Code == vectabase.ERATELIMITED && len(c.Response().Header.Peek(fiber.HeaderRetryAfter)) == 0 {
			c.Set(fiber.HeaderRetryAfter, "1")
		}
		return c.Status(status).JSON(ErrorBody{
			Error:     ae.Code,
			Message:   ae.Message,
			RequestID: id,
			Timestamp: time.Now().UTC().Format(time.RFC3339),
		})
	}
}

// ErrorTextForLog is what an internal error contributes to a log line.
// Hooks in the logger redact known secret shapes on top of this.
func errorTextForLog(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
