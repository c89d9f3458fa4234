// `visor bench lifecycle`'s mechanism: domains created and destroyed through the API one after the
// other give back their threads, and each is timed from the request to its first console byte.

import Foundation
import Testing
import VisorBench

@Suite("visor bench lifecycle", .timeLimit(.minutes(10)))
struct LifecycleBenchmarkTests {
    @Test("five domains through the API: each timed, threads all returned, the report's rows")
    func fiveDomains() throws {
        let result = try LifecycleBenchmark.run(domains: 5, liveDomains: 2, roundTrips: 5, engine: "interp")
        #expect(result.createToFirstByte.count == 5 && result.destroy.count == 5 && result.roundTrip.count == 5)
        #expect(result.createToFirstByte.allSatisfy { $0 > 0 })
        #expect(result.after.threads <= result.before.threads, "threads before \(result.before.threads), after \(result.after.threads)")
        // Two live domains hold threads of their own (vCPU and timer threads at least).
        #expect(result.withLive.threads >= result.before.threads + 2)
        let report = result.report
        for row in ["create to first console byte", "destroy (request to gone)", "API round trip (GET /host)",
                    "process threads before"] {
            #expect(report.contains(row), "\(report)")
        }
        #expect(!report.contains("NOTE: threads were not all returned"))
    }
}
