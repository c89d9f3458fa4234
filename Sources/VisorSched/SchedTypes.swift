// Value types shared by every scheduling policy: time, identifiers, pCPU sets, affinity, the clock.
//
// Everything here is plain integers: no Foundation, no threads. Time is nanoseconds, as Xen's
// `s_time_t`, carried in `SchedTime` so that a count of milliseconds can never be mistaken for one.

/// A point on the scheduler's clock or a length of time, in nanoseconds (Xen's `s_time_t`).
public struct SchedTime: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var nanoseconds: Int64

    @inlinable public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }

    @inlinable public static func nanoseconds(_ value: Int64) -> SchedTime { SchedTime(nanoseconds: value) }
    @inlinable public static func microseconds(_ value: Int64) -> SchedTime { SchedTime(nanoseconds: value * 1_000) }
    @inlinable public static func milliseconds(_ value: Int64) -> SchedTime { SchedTime(nanoseconds: value * 1_000_000) }
    @inlinable public static func seconds(_ value: Int64) -> SchedTime { SchedTime(nanoseconds: value * 1_000_000_000) }

    public static let zero = SchedTime(nanoseconds: 0)
    /// Far enough in the future to stand for "never" without overflowing when a slice is added.
    public static let distantFuture = SchedTime(nanoseconds: Int64.max / 4)

    @inlinable public var microseconds: Int64 { nanoseconds / 1_000 }
    @inlinable public var milliseconds: Int64 { nanoseconds / 1_000_000 }
    /// The value in seconds as a Double (reports and tests only).
    public var seconds: Double { Double(nanoseconds) / 1e9 }

    @inlinable public static func < (a: SchedTime, b: SchedTime) -> Bool { a.nanoseconds < b.nanoseconds }
    @inlinable public static func + (a: SchedTime, b: SchedTime) -> SchedTime { SchedTime(nanoseconds: a.nanoseconds + b.nanoseconds) }
    @inlinable public static func - (a: SchedTime, b: SchedTime) -> SchedTime { SchedTime(nanoseconds: a.nanoseconds - b.nanoseconds) }
    @inlinable public static func += (a: inout SchedTime, b: SchedTime) { a.nanoseconds += b.nanoseconds }
    @inlinable public static func -= (a: inout SchedTime, b: SchedTime) { a.nanoseconds -= b.nanoseconds }
    @inlinable public static func * (a: SchedTime, k: Int64) -> SchedTime { SchedTime(nanoseconds: a.nanoseconds * k) }
    @inlinable public static func / (a: SchedTime, k: Int64) -> SchedTime { SchedTime(nanoseconds: a.nanoseconds / k) }

    public var description: String {
        let ns = nanoseconds
        if ns % 1_000_000 == 0 { return "\(ns / 1_000_000)ms" }
        if ns % 1_000 == 0 { return "\(ns / 1_000)us" }
        return "\(ns)ns"
    }
}

/// A domain (guest), Xen's `domid_t`.
public struct DomainID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    @inlinable public init(_ rawValue: UInt32) { self.rawValue = rawValue }
    public static func < (a: DomainID, b: DomainID) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "d\(rawValue)" }
}

/// A virtual CPU: its domain and its index inside that domain (Xen's `d1v0`).
public struct VCPUID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var domain: DomainID
    public var index: Int
    @inlinable public init(domain: DomainID, index: Int) {
        self.domain = domain
        self.index = index
    }
    @inlinable public init(_ domain: UInt32, _ index: Int) { self.init(domain: DomainID(domain), index: index) }
    public static func < (a: VCPUID, b: VCPUID) -> Bool {
        a.domain != b.domain ? a.domain < b.domain : a.index < b.index
    }
    public var description: String { "d\(domain.rawValue)v\(index)" }
}

/// A physical CPU of the pool the scheduler instance owns (numbered from 0).
public struct PCPUID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: Int
    @inlinable public init(rawValue: Int) { self.rawValue = rawValue }
    @inlinable public init(_ rawValue: Int) { self.rawValue = rawValue }
    public static func < (a: PCPUID, b: PCPUID) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "p\(rawValue)" }
}

/// A set of pCPUs (Xen's `cpumask_t`), at most `PCPUSet.capacity` of them, stored inline.
public struct PCPUSet: Hashable, Sendable, Sequence, CustomStringConvertible {
    public static let capacity = 256
    @usableFromInline var w0: UInt64 = 0, w1: UInt64 = 0, w2: UInt64 = 0, w3: UInt64 = 0

    public init() {}
    public init<S: Sequence>(_ cpus: S) where S.Element == PCPUID { for c in cpus { insert(c) } }
    public init(_ cpus: PCPUID...) { self.init(cpus) }
    /// pCPUs `0 ..< count`.
    public static func first(_ count: Int) -> PCPUSet { PCPUSet((0..<count).map(PCPUID.init(rawValue:))) }
    public static func range(_ r: ClosedRange<Int>) -> PCPUSet { PCPUSet(r.map(PCPUID.init(rawValue:))) }

    @inlinable func word(_ i: Int) -> UInt64 {
        switch i { case 0: w0; case 1: w1; case 2: w2; default: w3 }
    }
    @inlinable mutating func setWord(_ i: Int, _ v: UInt64) {
        switch i { case 0: w0 = v; case 1: w1 = v; case 2: w2 = v; default: w3 = v }
    }

    @inlinable public func contains(_ cpu: PCPUID) -> Bool {
        let n = cpu.rawValue
        guard n >= 0, n < PCPUSet.capacity else { return false }
        return word(n >> 6) & (1 << UInt64(n & 63)) != 0
    }
    @inlinable public mutating func insert(_ cpu: PCPUID) {
        let n = cpu.rawValue
        precondition(n >= 0 && n < PCPUSet.capacity, "pCPU \(n) outside 0..<\(PCPUSet.capacity)")
        setWord(n >> 6, word(n >> 6) | (1 << UInt64(n & 63)))
    }
    @inlinable public mutating func remove(_ cpu: PCPUID) {
        let n = cpu.rawValue
        guard n >= 0, n < PCPUSet.capacity else { return }
        setWord(n >> 6, word(n >> 6) & ~(1 << UInt64(n & 63)))
    }
    @inlinable public var isEmpty: Bool { (w0 | w1 | w2 | w3) == 0 }
    public var count: Int { w0.nonzeroBitCount + w1.nonzeroBitCount + w2.nonzeroBitCount + w3.nonzeroBitCount }

    @inlinable public func intersection(_ o: PCPUSet) -> PCPUSet {
        var r = PCPUSet(); r.w0 = w0 & o.w0; r.w1 = w1 & o.w1; r.w2 = w2 & o.w2; r.w3 = w3 & o.w3; return r
    }
    @inlinable public func union(_ o: PCPUSet) -> PCPUSet {
        var r = PCPUSet(); r.w0 = w0 | o.w0; r.w1 = w1 | o.w1; r.w2 = w2 | o.w2; r.w3 = w3 | o.w3; return r
    }
    @inlinable public func subtracting(_ o: PCPUSet) -> PCPUSet {
        var r = PCPUSet(); r.w0 = w0 & ~o.w0; r.w1 = w1 & ~o.w1; r.w2 = w2 & ~o.w2; r.w3 = w3 & ~o.w3; return r
    }
    @inlinable public func intersects(_ o: PCPUSet) -> Bool { !intersection(o).isEmpty }
    @inlinable public func isSubset(of o: PCPUSet) -> Bool { subtracting(o).isEmpty }

    /// The lowest pCPU at or above `start`, if any.
    @inlinable public func next(atOrAfter start: Int) -> PCPUID? {
        var n = Swift.max(start, 0)
        while n < PCPUSet.capacity {
            let bits = word(n >> 6) >> UInt64(n & 63)
            if bits != 0 { return PCPUID(n + bits.trailingZeroBitCount) }
            n = (n | 63) + 1
        }
        return nil
    }
    public var first: PCPUID? { next(atOrAfter: 0) }

    /// Xen's `cpumask_cycle`: the first member after `cpu`, wrapping round; `nil` when empty.
    @inlinable public func cycle(after cpu: PCPUID) -> PCPUID? {
        next(atOrAfter: cpu.rawValue + 1) ?? next(atOrAfter: 0)
    }
    /// Xen's `cpumask_test_or_cycle`: `cpu` itself if a member, else the next member after it.
    @inlinable public func testOrCycle(_ cpu: PCPUID) -> PCPUID? { contains(cpu) ? cpu : cycle(after: cpu) }

    public struct Iterator: IteratorProtocol {
        var set: PCPUSet
        var position = 0
        public mutating func next() -> PCPUID? {
            guard let c = set.next(atOrAfter: position) else { return nil }
            position = c.rawValue + 1
            return c
        }
    }
    public func makeIterator() -> Iterator { Iterator(set: self) }

    /// Xen's cpu-list notation ("0-3,5").
    public var description: String {
        var parts: [String] = []
        var it = makeIterator()
        var run: (Int, Int)?
        while let c = it.next() {
            if let r = run, r.1 + 1 == c.rawValue { run = (r.0, c.rawValue); continue }
            if let r = run { parts.append(r.0 == r.1 ? "\(r.0)" : "\(r.0)-\(r.1)") }
            run = (c.rawValue, c.rawValue)
        }
        if let r = run { parts.append(r.0 == r.1 ? "\(r.0)" : "\(r.0)-\(r.1)") }
        return parts.isEmpty ? "none" : parts.joined(separator: ",")
    }

    /// Parses the cpu-list syntax of `xl vcpu-pin` and `cpus=` for plain pCPU numbers: "all",
    /// "N", "N-M", each optionally negated with "^", comma-separated ("all,^7", "0-3,^1").
    /// NUMA node terms ("nodes:…") are not supported. `all` means pCPUs `0 ..< poolSize`.
    public init?(cpuList text: String, poolSize: Int) {
        self.init()
        for raw in text.split(separator: ",", omittingEmptySubsequences: false) {
            var term = Substring(raw)
            let negate = term.hasPrefix("^")
            if negate { term = term.dropFirst() }
            let cpus: [Int]
            if term == "all" {
                cpus = Array(0..<poolSize)
            } else if let dash = term.firstIndex(of: "-") {
                guard let a = Int(term[..<dash]), let b = Int(term[term.index(after: dash)...]), a <= b, a >= 0,
                      b < PCPUSet.capacity else { return nil }
                cpus = Array(a...b)
            } else {
                guard let a = Int(term), a >= 0, a < PCPUSet.capacity else { return nil }
                cpus = [a]
            }
            for c in cpus { if negate { remove(PCPUID(c)) } else { insert(PCPUID(c)) } }
        }
    }
}

/// A vCPU's placement constraints. `hard`: the pCPUs it may run on (`nil`: any in the pool).
/// `soft`: the pCPUs it prefers (`nil`: no preference). Xen's `cpu_hard_affinity`/`cpu_soft_affinity`.
public struct Affinity: Hashable, Sendable {
    public var hard: PCPUSet?
    public var soft: PCPUSet?
    public init(hard: PCPUSet? = nil, soft: PCPUSet? = nil) {
        self.hard = hard
        self.soft = soft
    }
    public static let any = Affinity()
    public static func pinned(_ cpu: PCPUID) -> Affinity { Affinity(hard: PCPUSet(cpu)) }
}

/// The source of "now" for a scheduler. The runtime passes a monotonic clock; tests a `ManualClock`.
public protocol SchedClock: AnyObject {
    var now: SchedTime { get }
}

/// A clock that only moves when told to: the fake clock of every simulation.
public final class ManualClock: SchedClock {
    public private(set) var now: SchedTime
    public init(start: SchedTime = .zero) { now = start }
    public func advance(to time: SchedTime) {
        precondition(time >= now, "the clock cannot go backwards (\(now) → \(time))")
        now = time
    }
    public func advance(by delta: SchedTime) { advance(to: now + delta) }
}

/// A clock read through a closure (for a runtime that owns its own time source).
public final class ClosureClock: SchedClock {
    let read: () -> SchedTime
    public init(_ read: @escaping () -> SchedTime) { self.read = read }
    public var now: SchedTime { read() }
}
