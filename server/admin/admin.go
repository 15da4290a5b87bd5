// Package admin is the administrators' HTTP API under /api/admin. Each
// concern has its own route table in its own file (audit.go here; the key
// management routes join as keys.go), and cmd mounts each with the admin
// middleware: auth.(*Service).RequireAdmin().
package admin
