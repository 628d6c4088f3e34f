// Package migrating holds the code of docs/migrating.md: for each breaker
// a Go service moves from (sony/gobreaker, failsafe-go, resilience4j,
// opossum), what it wrote before and what it writes with httpbreaker.
//
// The guide shows the regions of these files that a "guide: name" comment
// opens and "guide: end" closes; TestTheGuideShowsThisPackagesCode fails
// when a snippet in the guide is not the code here, so the guide cannot
// drift from code that compiles. The Go code of both sides compiles and
// runs: the tests put the same calls through the old breaker and the new
// policy and check that they trip, probe and recover alike, and show each
// difference the guide states. resilience4j (Java) and opossum
// (JavaScript) are shown as their users write them, and only their
// httpbreaker side is code here.
package migrating
