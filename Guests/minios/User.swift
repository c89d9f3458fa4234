// minios user mode (CPL3): the demo tasks and the shell. Nothing here may touch a port, an MSR
// or the console directly: output goes through the `write` system call from a per-task line
// buffer (the task's argument), and the clock for the spinner is RDTSC (allowed at CPL3).

let lineBufferSize: UInt64 = 256

/// A task's output line, sent with one `write` system call.
struct Out {
    let p: UnsafeMutablePointer<UInt8>
    var n = 0

    init(_ arg: UInt64) { p = UnsafeMutablePointer<UInt8>(bitPattern: UInt(arg))! }

    mutating func byte(_ b: UInt8) {
        if n == Int(lineBufferSize) { flush() }
        p[n] = b
        n += 1
    }
    mutating func add(_ s: StaticString) {
        let q = s.utf8Start
        for i in 0..<s.utf8CodeUnitCount { byte(q[i]) }
    }
    mutating func add<C: Collection>(bytes: C) where C.Element == UInt8 {
        for b in bytes { byte(b) }
    }
    mutating func add(_ v: UInt64) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)   // 24 bytes of scratch for 20 digits
        withUnsafeMutableBytes(of: &digits) { raw in
            var k = 0
            var x = v
            repeat {
                raw[k] = UInt8(truncatingIfNeeded: x % 10) + 0x30
                x /= 10
                k += 1
            } while x != 0
            while k > 0 {
                k -= 1
                byte(raw[k])
            }
        }
    }
    mutating func add(signed v: Int64) {
        if v < 0 {
            byte(0x2d)
            add(UInt64(bitPattern: 0 &- v))
        } else {
            add(UInt64(v))
        }
    }
    mutating func flush() {
        if n > 0 { _ = mos_sys(Syscall.write, UInt64(UInt(bitPattern: p)), UInt64(n), 0) }
        n = 0
    }
    mutating func line() {
        byte(0x0a)
        flush()
    }
}

func sysSleep(ms: UInt64) { _ = mos_sys(Syscall.sleep, ms, 0, 0) }
func sysYield() { _ = mos_sys(Syscall.yield, 0, 0, 0) }
func sysTime() -> UInt64 { UInt64(bitPattern: mos_sys(Syscall.time, 0, 0, 0)) }
func sysExit() -> Never {
    while true { _ = mos_sys(Syscall.exit, 0, 0, 0) }
}

// MARK: Demo tasks

/// Prints `counter: k` five times, 100 ms apart (the sleep system call).
let counterTask: @convention(c) (UInt64) -> Void = { arg in
    var o = Out(arg)
    for k in UInt64(1)...5 {
        o.add("counter: ")
        o.add(k)
        o.line()
        sysSleep(ms: 100)
    }
    o.add("counter: done")
    o.line()
    sysExit()
}

/// CPU-bound for 300 ms of TSC time without a system call: only the timer preempts it.
let spinnerTask: @convention(c) (UInt64) -> Void = { arg in
    var o = Out(arg)
    let start = gk_rdtsc()
    let end = start &+ Timing.tscTicks(nanoseconds: 300_000_000)
    var state: UInt64 = 0x9e37_79b9_7f4a_7c15
    var loops: UInt64 = 0
    while gk_rdtsc() < end {
        state = mos_spin(100_000, state)
        loops += 1
    }
    o.add("spinner: done loops=")
    o.add(loops)
    o.line()
    sysExit()
}

/// Prints `yielder: k` five times, yielding in between.
let yielderTask: @convention(c) (UInt64) -> Void = { arg in
    var o = Out(arg)
    for k in UInt64(1)...5 {
        o.add("yielder: ")
        o.add(k)
        o.line()
        sysYield()
    }
    o.add("yielder: done")
    o.line()
    sysExit()
}

// MARK: Shell

func trimmed(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
    var s = bytes
    while let f = s.first, f == 0x20 || f == 0x09 || f == 0x0d || f == 0x0a { s = s.dropFirst() }
    while let l = s.last, l == 0x20 || l == 0x09 || l == 0x0d || l == 0x0a { s = s.dropLast() }
    return s
}

func parseNumber(_ bytes: ArraySlice<UInt8>) -> UInt64? {
    guard !bytes.isEmpty else { return nil }
    var v: UInt64 = 0
    for b in bytes {
        guard b >= 0x30 && b <= 0x39, v < 1_000_000_000_000 else { return nil }
        v = v * 10 + UInt64(b - 0x30)
    }
    return v
}

func equals(_ a: ArraySlice<UInt8>, _ s: StaticString) -> Bool {
    guard a.count == s.utf8CodeUnitCount else { return false }
    let q = s.utf8Start
    var i = 0
    for b in a {
        if b != q[i] { return false }
        i += 1
    }
    return true
}

/// Runs one command line.
func runCommand(_ line: ArraySlice<UInt8>, _ o: inout Out) {
    let text = trimmed(line)
    if text.isEmpty { return }
    let space = text.firstIndex(of: 0x20) ?? text.endIndex
    let word = text[text.startIndex..<space]
    let argument = trimmed(text[space...])
    if equals(word, "help") {
        o.add("help: commands: help | ps | sleep <ms> | bench [n] | halt")
        o.line()
    } else if equals(word, "ps") {
        _ = mos_sys(Syscall.ps, 0, 0, 0)
    } else if equals(word, "sleep") {
        guard let ms = parseNumber(argument) else {
            o.add("sleep: usage: sleep <ms>")
            o.line()
            return
        }
        let t0 = sysTime()
        sysSleep(ms: ms)
        let slept = sysTime() &- t0
        o.add("sleep: ms=")
        o.add(ms)
        o.add(" slept_ns=")
        o.add(slept)
        o.line()
    } else if equals(word, "bench") {
        let n = parseNumber(argument) ?? benchCount
        // The system call round trip, timed here at CPL3 with the TSC.
        let t0 = gk_rdtsc()
        for _ in 0..<max(n, 1) { _ = mos_sys(Syscall.nop, 0, 0, 0) }
        let syscallNs = Timing.nanoseconds(tscTicks: gk_rdtsc() &- t0) / max(n, 1)
        _ = mos_sys(Syscall.bench, max(n, 1), syscallNs, 0)
    } else if equals(word, "halt") {
        _ = mos_sys(Syscall.halt, 0, 0, 0)
    } else {
        o.add("unknown command: ")
        o.add(bytes: word)
        o.add(" (try help)")
        o.line()
    }
}

/// Console input read but not yet consumed (a read may return more than one line).
nonisolated(unsafe) var shellPending: [UInt8] = []

/// Reads a line with echo and backspace; returns at CR or LF.
func readLine(_ o: inout Out) -> [UInt8] {
    var line: [UInt8] = []
    var buffer: (UInt64, UInt64) = (0, 0)
    while true {
        while !shellPending.isEmpty {
            let c = shellPending.removeFirst()
            if c == 0x0d || c == 0x0a {
                o.line()
                return line
            } else if c == 0x7f || c == 0x08 {
                if !line.isEmpty {
                    line.removeLast()
                    o.byte(0x08)
                    o.byte(0x20)
                    o.byte(0x08)
                }
            } else if c >= 0x20 && c < 0x7f && line.count < 200 {
                line.append(c)
                o.byte(c)
            }
        }
        o.flush()
        let n = withUnsafeMutableBytes(of: &buffer) { raw in
            mos_sys(Syscall.read, UInt64(UInt(bitPattern: raw.baseAddress!)), 16, 0)
        }
        if n <= 0 { continue }
        withUnsafeBytes(of: &buffer) { raw in for i in 0..<Int(n) { shellPending.append(raw[i]) } }
    }
}

let shellTask: @convention(c) (UInt64) -> Void = { arg in
    var o = Out(arg)
    if let script {
        for command in Array(script.utf8).split(separator: 0x3b, omittingEmptySubsequences: true) {
            o.add("minios> ")
            o.add(bytes: trimmed(command))
            o.line()
            runCommand(command, &o)
        }
        o.add("minios> halt")
        o.line()
        runCommand(ArraySlice(Array("halt".utf8)), &o)
    }
    o.add("minios: shell ready (help lists the commands)")
    o.line()
    while true {
        o.add("minios> ")
        o.flush()
        let line = readLine(&o)
        runCommand(line[...], &o)
    }
}
