import Testing
@testable import VisorVirtio

/// The poll window's adaptation: each step is a count of nanoseconds, no clock involved.
@Suite struct PollWindowTests {
    @Test func startsAtTheMaximum() {
        #expect(PollWindow(minimum: 20, maximum: 400).current == 400)
        #expect(PollWindow(minimum: 500, maximum: 400).minimum == 400, "a minimum above the maximum is the maximum")
    }

    @Test func requestsFurtherApartThanTheMaximumShrinkItToTheMinimum() {
        var window = PollWindow(minimum: 20, maximum: 400)
        // Requests 700 after each pass, more than the longest poll: each poll runs out, and the
        // next request comes 700 after the pass began it.
        var lengths: [UInt64] = []
        for _ in 0..<6 { window.missed(by: 700 - window.current); lengths.append(window.current) }
        #expect(lengths == [200, 100, 50, 25, 20, 20])
        // Then they come 150 after each pass: the next run-out poll grows the window to cover
        // them, and it stays (a poll that finds its request changes nothing).
        window.missed(by: 150 - window.current)
        #expect(window.current == 187)
    }

    @Test func aRequestJustAfterARunOutPollGrowsItToCoverTheRequest() {
        var window = PollWindow(minimum: 20, maximum: 400)
        for _ in 0..<5 { window.missed(by: 10_000) }
        #expect(window.current == 20)
        // The next request came 60 after a poll of 20 ended: 80 would have taken it, and the
        // window grows to that and a quarter more.
        window.missed(by: 60)
        #expect(window.current == 100)
        // Never past the maximum.
        window.missed(by: 290)
        #expect(window.current == 400)
    }

    @Test func hugeGapsDoNotOverflow() {
        var window = PollWindow(minimum: 20, maximum: 400)
        window.missed(by: .max)
        #expect(window.current == 200)
    }
}
