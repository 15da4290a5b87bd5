# The README's commands, for those who use just.

# Run everything locally on the embedded default (private PostgreSQL under ./.vectabase).
dev:
    go run ./cmd/vectabase dev

# Run the tests (boots throwaway PostgreSQL clusters; or set TEST_DATABASE_URL).
test:
    go test ./...

# What CI runs.
ci:
    bash .ci/run

build:
    go build -o vectabase ./cmd/vectabase
