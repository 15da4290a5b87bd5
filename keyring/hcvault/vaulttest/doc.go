// Package vaulttest runs the keyring's KEK suite (keyring/kektest) against
// the Vault transit KEK (keyring/hcvault) on an in-process Vault started with
// vault.NewTestCluster. It is its own Go module, so Vault's large dependency
// tree stays out of the main go.mod; the root `go test ./...` does not enter
// it. Run it with:
//
//	cd keyring/hcvault/vaulttest && go test ./...
//
// The first compile takes several minutes; later runs take seconds.
package vaulttest
