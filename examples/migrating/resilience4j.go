package migrating

// resilience4jConfig is the after of a resilience4j instance in Spring
// Boot's application.yml: the same breaker in httpbreaker's config file.
const resilience4jConfig = `
# guide: resilience4j-after
keys:
  inventory:
    last_calls: 100           # slidingWindowType: COUNT_BASED, slidingWindowSize: 100
    min_requests: 20          # minimumNumberOfCalls
    failure_rate: 0.5         # failureRateThreshold: 50, a fraction here; both open at the rate, not above it
    slow_call: 2s             # slowCallDurationThreshold
    slow_call_rate: 0.8       # slowCallRateThreshold: 80
    open_for: 60s             # waitDurationInOpenState
    max_open_for: off         # a fixed wait, as there; ours doubles after a failed probe unless off
    half_open_requests: 10    # permittedNumberOfCallsInHalfOpenState ...
    half_open_successes: 6    # ... closing below a 50% failure rate: 6 of the 10 must succeed
    consecutive_failures: off # resilience4j has no in-a-row rule; ours is on (5) unless off
# guide: end
`
