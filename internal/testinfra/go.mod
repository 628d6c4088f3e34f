module github.com/httpbreaker/httpbreaker/internal/testinfra

go 1.26.0

replace github.com/httpbreaker/httpbreaker => ../../

require (
	github.com/httpbreaker/httpbreaker v0.1.0
	go.uber.org/goleak v1.3.0
)
