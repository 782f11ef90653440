#!/usr/bin/env bash
# Builds Docker Compose (v5, the `docker compose` users run) from the Go module proxy, once per version, and prints
# the binary's path. Built in a module of its own, because Compose's go.mod has exclude directives, which
# `go install module@version` refuses; the excludes are repeated here so the same versions are chosen.
set -euo pipefail
CACHE=${PALISADE_CACHE:-$HOME/.cache/palisade}
COMPOSE_VERSION=v5.6.0
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
compose=$CACHE/bin/docker-compose-$COMPOSE_VERSION
if [ ! -x "$compose" ]; then
  work=$CACHE/build/compose-$COMPOSE_VERSION
  rm -rf "$work"; mkdir -p "$work" "$CACHE/bin"
  cd "$work"
  {
    printf 'module palisade.local/compose\n\ngo 1.26.8\n\nexclude (\n'
    printf '\tgithub.com/davecgh/go-spew v1.1.2-0.20180830191138-d8f796af33cc\n'
    printf '\tgithub.com/pmezard/go-difflib v1.0.1-0.20181226105442-5d4384ee4fb2\n)\n'
  } > go.mod
  go get "github.com/docker/compose/v5/cmd@$COMPOSE_VERSION" >&2
  go build -trimpath -ldflags "-s -w -X github.com/docker/compose/v5/internal.Version=$COMPOSE_VERSION" \
    -o "$compose.tmp" github.com/docker/compose/v5/cmd
  mv "$compose.tmp" "$compose"
fi
echo "$compose"
