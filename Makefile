# perk — make help lists the targets.
GO        ?= go
BIN       := bin/perk
DATA_DIR  ?= ./data
ADDR      ?= 127.0.0.1:8080
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/perkhq/perk/internal/app.Version=$(VERSION)
PKGS      := ./...
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

.PHONY: build
build: ## build bin/perk
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/perk

.PHONY: run
run: build ## build and start perk on the embedded store with a demo merchant
	$(BIN) serve --demo --data-dir $(DATA_DIR) --addr $(ADDR)

.PHONY: services
services: ## check (and start if stopped) PostgreSQL, Redis and NATS for the tests
	@scripts/services.sh

.PHONY: test
test: services ## run the whole test suite against real SQLite, PostgreSQL, Redis and NATS
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout 20m $(PKGS)

.PHONY: crashtest
crashtest: services ## the long SIGKILL crash test: 5,000 users, three kills of a real perk serve
	PERK_CRASHTEST=long $(GO) test -count=1 -timeout 30m -run TestCrashUnderEventLoad -v ./cmd/perk/

.PHONY: test-race
test-race: services ## the whole suite with the race detector
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

.PHONY: lint
lint: ## go vet, gofmt and staticcheck
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) run $(STATICCHECK) $(PKGS)

.PHONY: bench
bench: services ## run the benchmarks and print their figures
	@command -v wrk >/dev/null || echo "note: wrk is not installed (apt-get install wrk); BenchmarkQualifyHTTP/wrk is skipped"
	$(GO) test -run '^$$' -bench . -benchmem -count=1 -timeout 30m $(PKGS)

.PHONY: clean
clean: ## remove build output
	rm -rf bin
