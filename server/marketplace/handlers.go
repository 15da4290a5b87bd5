package marketplace

import (
	"github.com/gofiber/fiber/v2"

	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/store"
)

// The resource routes' handlers are built from these: each reads the
// route's id parameters (UUIDs, in the order named; a bad one is 400
// naming it), decodes the body when there is one (strictly, see
// server.DecodeJSON), calls one service or repository method with the
// request's context and encodes its answer.

// pathIDs reads the named path parameters, each a UUID.
func pathIDs(c *fiber.Ctx, names []string) ([]string, error) {
	ids := make([]string, len(names))
	for i, n := range names {
		id, err := idParam(c, n)
		if err != nil {
			return nil, err
		}
		ids[i] = id
	}
	return ids, nil
}

// withBody answers status and fn's result for the route's ids and the
// decoded body.
func withBody[In, Out any](status int, params []string, fn func(c *fiber.Ctx, ids []string, in In) (Out, error)) fiber.Handler {
	return func(c *fiber.Ctx) error {
		ids, err := pathIDs(c, params)
		if err != nil {
			return err
		}
		var in In
		if err := server.DecodeJSON(c, &in); err != nil {
			return err
		}
		out, err := fn(c, ids, in)
		if err != nil {
			return err
		}
		return c.Status(status).JSON(out)
	}
}

// withIDs answers fn's result for the route's ids.
func withIDs[Out any](params []string, fn func(c *fiber.Ctx, ids []string) (Out, error)) fiber.Handler {
	return func(c *fiber.Ctx) error {
		ids, err := pathIDs(c, params)
		if err != nil {
			return err
		}
		out, err := fn(c, ids)
		if err != nil {
			return err
		}
		return c.JSON(out)
	}
}

// deleting answers 204 once fn has deleted what the route's ids name.
func deleting(params []string, fn func(c *fiber.Ctx, ids []string) error) fiber.Handler {
	return func(c *fiber.Ctx) error {
		ids, err := pathIDs(c, params)
		if err != nil {
			return err
		}
		if err := fn(c, ids); err != nil {
			return err
		}
		return c.SendStatus(fiber.StatusNoContent)
	}
}

// listing answers one page of what fn lists for the route's ids (?limit,
// ?cursor), each row shown as conv makes it.
func listing[S, T any](params []string, fn func(c *fiber.Ctx, ids []string, p store.Page) ([]S, *store.Cursor, error), conv func(S) T) fiber.Handler {
	return withIDs(params, func(c *fiber.Ctx, ids []string) (list[T], error) {
		p, err := pageOf(c)
		if err != nil {
			return list[T]{}, err
		}
		rows, next, err := fn(c, ids, p)
		if err != nil {
			return list[T]{}, err
		}
		return listOf(rows, next, conv), nil
	})
}
