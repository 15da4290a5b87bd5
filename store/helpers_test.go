package store_test

import (
	"errors"
	"strconv"
)

func itoa(n int) string { return strconv.Itoa(n) }

func isErr(err, target error) bool { return errors.Is(err, target) }
