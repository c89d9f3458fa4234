// minios: a small kernel on GuestKit in the spirit of Xen's Mini-OS. It boots native or PV
// through GuestKit's paravirt-ops table (`Paravirt.setUp`), runs a few tasks at CPL3 with
// round-robin preemption from the timer (native: the local APIC timer interrupt; PV: the
// VIRQ_TIMER upcall), system calls through `int3` (a DPL3 gate; see entry.S), and a tiny shell.
//
// Command line: pv=off|on, tasks=N (demo tasks, 0-3, default 3), bench_n=N (default 1000),
// bench_bytes=N (default 1024), script=cmd1;cmd2;... (must come last: it takes the rest of the
// line, so commands may contain spaces; the shell runs them as if typed, then halts).
// See Guests/README.md for the output formats.
//
// Kernel code always runs with IF = 0 (it is entered through interrupt gates only) and is
// never preempted; tasks run at CPL3 with IF = 1, IOPL 0, each with
// its own kernel stack (TSS.RSP0 and `mos_kernel_rsp` follow the running task). A preempted
// or blocked task's state lives on its kernel stack: the entry stub's frame plus the
// callee-saved registers `mos_switch` pushes.

enum TaskState {
    static let unused: UInt8 = 0
    static let runnable: UInt8 = 1
    static let running: UInt8 = 2
    static let sleeping: UInt8 = 3
    static let reading: UInt8 = 4
    static let exited: UInt8 = 5

    static func name(_ s: UInt8) -> StaticString {
        switch s {
        case runnable: return "runnable"
        case running: return "running"
        case sleeping: return "sleeping"
        case reading: return "reading"
        case exited: return "exited"
        default: return "unused"
        }
    }
}

struct Task {
    var name: StaticString
    var state: UInt8
    var ticks: UInt64
    var wakeAt: UInt64
    var ksp: UInt64
    var kstackTop: UInt64
    var syscalls: UInt64
}

enum Syscall {
    static let write: UInt64 = 0
    static let sleep: UInt64 = 1
    static let yield: UInt64 = 2
    static let exit: UInt64 = 3
    static let read: UInt64 = 4
    static let ps: UInt64 = 5
    static let bench: UInt64 = 6
    static let halt: UInt64 = 7
    static let nop: UInt64 = 8
    static let time: UInt64 = 9
}

let maxTasks = 8
let stackSize = 16384
let sliceNanoseconds: UInt64 = 10_000_000
let inputPollNanoseconds: UInt64 = 10_000_000

nonisolated(unsafe) var tasks: UnsafeMutablePointer<Task>! = nil
nonisolated(unsafe) var taskCount = 0
nonisolated(unsafe) var current = -1
nonisolated(unsafe) var bootKSP: UInt64 = 0
nonisolated(unsafe) var needResched = false
nonisolated(unsafe) var tss: UnsafeMutableRawPointer! = nil
nonisolated(unsafe) var ramTop: UInt64 = 8 << 20
nonisolated(unsafe) var script: String? = nil
nonisolated(unsafe) var benchCount: UInt64 = 1000
nonisolated(unsafe) var benchBytes: UInt64 = 1024
nonisolated(unsafe) var consoleEvents: UInt64 = 0
nonisolated(unsafe) var timerArmedAt: UInt64 = 0

func address(_ p: UnsafeMutableRawPointer) -> UInt64 { UInt64(UInt(bitPattern: p)) }

// MARK: Boot

func guestMain() {
    parseCommandLine()
    let mode = Paravirt.setUp()
    gk_cli()                                    // kernel code runs with IF = 0 in both modes
    put(mode == .pv ? "minios: booting (pv): " : "minios: booting (native): ")
    putLine(Paravirt.reason)
    if let mb = GuestKit.multiboot, let upper = mb.memoryUpperKiB { ramTop = (UInt64(upper) + 1024) * 1024 }

    installGDTAndTSS()
    installSyscall()
    Paravirt.timerHook = timerHook
    if mode == .pv {
        PV.upcallHook = upcallHook
        _ = Paravirt.enableConsoleInput(consoleHandler)
    }
    if let way = ShutdownRequests.listen() {
        put("minios: shutdown requests: ")
        putLine(way)
    }

    tasks = UnsafeMutablePointer<Task>.allocate(capacity: maxTasks)
    let demos = min(GuestKit.multiboot?.unsignedArgument("tasks") ?? 3, 3)
    let entries: [(StaticString, @convention(c) (UInt64) -> Void)] = [
        ("counter", counterTask), ("spinner", spinnerTask), ("yielder", yielderTask),
    ]
    for i in 0..<Int(demos) { spawn(entries[i].0, entries[i].1) }
    spawn("shell", shellTask)

    put("minios: mode=")
    put(Paravirt.modeName)
    put(" tasks=")
    put(taskCount)
    put(" slice_ms=")
    put(sliceNanoseconds / 1_000_000)
    putLine()
    schedule()                                  // never comes back to the boot context
    GuestKit.exit(0)
}

/// Everything before `script=` is ordinary `key=value` words; `script=` takes the rest.
func parseCommandLine() {
    guard let mb = GuestKit.multiboot else { return }
    benchCount = max(mb.unsignedArgument("bench_n") ?? benchCount, 1)
    benchBytes = min(max(mb.unsignedArgument("bench_bytes") ?? benchBytes, 1), 65536)
    guard let line = mb.commandLine else { return }
    let bytes = Array(line.utf8)
    let key = Array("script=".utf8)
    var i = 0
    while i + key.count <= bytes.count {
        if (i == 0 || bytes[i - 1] == 0x20) && Array(bytes[i..<(i + key.count)]) == key {
            script = String(decoding: bytes[(i + key.count)...], as: UTF8.self)
            return
        }
        i += 1
    }
}

/// The boot GDT plus a 64-bit TSS at 0x28 (RSP0 = the running task's kernel stack, set at
/// each switch). Tasks do no port I/O themselves; they use system calls.
func installGDTAndTSS() {
    tss = GuestKit.installTaskState()
}

/// System calls: `int3` through a DPL3 interrupt gate (see entry.S for why not SYSCALL).
func installSyscall() {
    Interrupts.setGate(vector: 3, entry: mos_syscall_entry_address(), dpl: 3)
}

/// A task whose first switch lands in `mos_task_start`, which irets to `entry(arg)` at CPL3.
func spawn(_ name: StaticString, _ entry: @convention(c) (UInt64) -> Void) {
    guard taskCount < maxTasks else { return }
    let kstack = UnsafeMutableRawPointer.allocate(byteCount: stackSize, alignment: 16)
    let ustack = UnsafeMutableRawPointer.allocate(byteCount: stackSize, alignment: 16)
    let out = UnsafeMutableRawPointer.allocate(byteCount: Int(lineBufferSize), alignment: 16)
    let top = address(kstack) + UInt64(stackSize)
    let frame = UnsafeMutablePointer<UInt64>(bitPattern: UInt(top - 12 * 8))!
    // r15 r14 r13 r12 rbx rbp | return address | rip cs rflags rsp ss
    for i in 0..<6 { frame[i] = 0 }
    frame[3] = address(out)                                 // r12: the task's argument
    frame[6] = mos_task_start_address()
    frame[7] = unsafeBitCast(entry, to: UInt64.self)
    frame[8] = 0x23
    frame[9] = 0x202                                        // IF = 1, IOPL 0
    frame[10] = address(ustack) + UInt64(stackSize) - 8     // as if called
    frame[11] = 0x1b
    tasks[taskCount] = Task(name: name, state: TaskState.runnable, ticks: 0, wakeAt: 0,
                            ksp: address(UnsafeMutableRawPointer(frame)), kstackTop: top, syscalls: 0)
    taskCount += 1
}

// MARK: Scheduling

/// Picks the next task to run (round robin after the current one), idling with the
/// paravirt-ops `halt` while there is none. Returns when the caller's task runs again.
func schedule() {
    while true {
        let now = Paravirt.ops.clockNow()
        var reader = -1
        for i in 0..<taskCount {
            if tasks[i].state == TaskState.sleeping && now >= tasks[i].wakeAt { tasks[i].state = TaskState.runnable }
            if tasks[i].state == TaskState.reading { reader = i }
        }
        if reader >= 0 && (consoleEvents != 0 || (!Paravirt.isPV && Console.uartHasInput)) {
            consoleEvents = 0
            tasks[reader].state = TaskState.runnable
        }
        var next = -1
        for k in 1...taskCount {
            let i = ((current < 0 ? -1 : current) + k) % taskCount
            if tasks[i].state == TaskState.runnable || tasks[i].state == TaskState.running {
                next = i
                break
            }
        }
        armTimer(now: now, reader: reader >= 0)
        if next >= 0 {
            needResched = false
            switchTo(next)
            return
        }
        Paravirt.ops.halt()
    }
}

/// One timer for both the time slice and the earliest sleeper (and, natively, input polling).
func armTimer(now: UInt64, reader: Bool) {
    var deadline = now &+ sliceNanoseconds
    for i in 0..<taskCount where tasks[i].state == TaskState.sleeping {
        deadline = min(deadline, tasks[i].wakeAt)
    }
    if reader && !Paravirt.isPV { deadline = min(deadline, now &+ inputPollNanoseconds) }
    timerArmedAt = deadline
    Paravirt.ops.timerArm(deadline)
}

func switchTo(_ next: Int) {
    tasks[next].state = TaskState.running
    if next == current { return }
    let prev = current
    current = next
    let top = tasks[next].kstackTop
    tss.storeBytes(of: top, toByteOffset: 4, as: UInt64.self)      // RSP0
    mos_kernel_rsp = top
    if prev < 0 {
        mos_switch(&bootKSP, tasks[next].ksp)
    } else {
        withUnsafeMutablePointer(to: &tasks[prev].ksp) { mos_switch($0, tasks[next].ksp) }
    }
}

/// PV: user mode runs with events unmasked (the kernel's halt leaves them masked).
func prepareReturnToUser() {
    if Paravirt.isPV { PV.enableEvents() }
}

@_cdecl("minios_enter_user")
func miniosEnterUser() { prepareReturnToUser() }

/// Preemption point after an interrupt or upcall: only when it interrupted user mode.
func preemptIfNeeded(_ frame: UnsafeMutablePointer<UInt64>) {
    guard frame[12] & 3 == 3, current >= 0 else { return }
    if needResched || consoleEvents != 0 {
        if tasks[current].state == TaskState.running { tasks[current].state = TaskState.runnable }
        schedule()
    }
    prepareReturnToUser()
}

let timerHook: TimerHook = { frame in
    needResched = true
    if let frame, frame[12] & 3 == 3, current >= 0 { tasks[current].ticks += 1 }
    if !Paravirt.isPV, let frame { preemptIfNeeded(frame) }
}

let upcallHook: InterruptHandler = { frame in preemptIfNeeded(frame) }

let consoleHandler: PortHandler = { _, _ in consoleEvents += 1 }

// MARK: System calls

@_cdecl("minios_syscall")
func miniosSyscall(_ nr: UInt64, _ a1: UInt64, _ a2: UInt64, _ a3: UInt64) -> Int64 {
    let me = current
    tasks[me].syscalls += 1
    var result: Int64 = 0
    switch nr {
    case Syscall.write:
        guard a2 <= 4096, a1 < ramTop, a2 <= ramTop - a1 else { result = -14; break }
        if a2 > 0 {
            Console.flush()                         // the kernel's own partial line first
            Paravirt.ops.consoleWrite(UnsafePointer<UInt8>(bitPattern: UInt(a1))!, Int(a2))
        }
        result = Int64(a2)
    case Syscall.sleep:
        tasks[me].wakeAt = Paravirt.ops.clockNow() &+ a1 &* 1_000_000
        tasks[me].state = TaskState.sleeping
        schedule()
    case Syscall.yield:
        tasks[me].state = TaskState.runnable
        schedule()
    case Syscall.exit:
        tasks[me].state = TaskState.exited
        schedule()
    case Syscall.read:
        guard a2 > 0, a2 <= 4096, a1 < ramTop, a2 <= ramTop - a1 else { result = -14; break }
        while true {
            let n = Paravirt.ops.consoleRead(UnsafeMutablePointer<UInt8>(bitPattern: UInt(a1))!, Int(a2))
            if n > 0 {
                result = Int64(n)
                break
            }
            tasks[me].state = TaskState.reading
            schedule()
        }
    case Syscall.ps:
        printTasks()
    case Syscall.bench:
        runBench(count: a1 == 0 ? benchCount : a1, syscallNanoseconds: a2)
        armTimer(now: Paravirt.ops.clockNow(), reader: false)
    case Syscall.halt:
        putLine("minios: halt")
        GuestKit.exit(0)
    case Syscall.nop:
        break
    case Syscall.time:
        result = Int64(bitPattern: Paravirt.ops.clockNow())
    default:
        result = -38
    }
    if needResched && tasks[me].state == TaskState.running {
        // The slice ended during this call (its timer fired in kernel mode): switch now.
        tasks[me].state = TaskState.runnable
        schedule()
    }
    prepareReturnToUser()
    return result
}

func printTasks() {
    for i in 0..<taskCount {
        put("ps: id=")
        put(i)
        put(" name=")
        put(tasks[i].name)
        put(" state=")
        put(TaskState.name(tasks[i].state))
        put(" ticks=")
        put(tasks[i].ticks)
        put(" syscalls=")
        put(tasks[i].syscalls)
        putLine()
    }
}

/// `bench`: in the kernel, timed with the paravirt clock. PV: `n` hypercalls (xen_version);
/// both modes: `n` port writes to 0x80 (an exit each on a hypervisor), five 1 ms timer sleeps
/// (latency past the deadline), and `bench_bytes` console bytes in one `consoleWrite`.
func runBench(count n: UInt64, syscallNanoseconds: UInt64) {
    Console.flush()
    let clock = Paravirt.ops.clockNow
    var hypercall: UInt64 = 0
    if Paravirt.isPV {
        let t0 = clock()
        for _ in 0..<n { _ = PV.call(Hypercall.xenVersion, UInt64(XenVersion.version)) }
        hypercall = (clock() &- t0) / n
    }
    let t1 = clock()
    for _ in 0..<n { gk_outb(0x80, 0) }
    let portio = (clock() &- t1) / n

    var timerTotal: UInt64 = 0
    let sleeps: UInt64 = 5
    for _ in 0..<sleeps {
        let deadline = clock() &+ 1_000_000
        Paravirt.sleep(untilNanoseconds: deadline)
        timerTotal &+= clock() &- deadline
    }

    let line = Array("bench: console-fill ".utf8)
    let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: Int(benchBytes))
    for i in 0..<Int(benchBytes) {
        let column = i % 64
        buffer[i] = column == 63 || i == Int(benchBytes) - 1 ? 0x0a : (column < line.count ? line[column] : 0x2e)
    }
    let t2 = clock()
    Paravirt.ops.consoleWrite(buffer, Int(benchBytes))
    let consoleNs = max(clock() &- t2, 1)

    put("bench: mode=")
    put(Paravirt.modeName)
    put(" n=")
    put(n)
    if Paravirt.isPV {
        put(" hypercall_ns=")
        put(hypercall)
    }
    put(" portio_ns=")
    put(portio)
    put(" syscall_ns=")
    put(syscallNanoseconds)
    put(" timer_latency_ns=")
    put(timerTotal / sleeps)
    put(" console_bytes=")
    put(benchBytes)
    put(" console_ns=")
    put(consoleNs)
    put(" console_bytes_per_s=")
    put(Timing.mulDiv(benchBytes, 1_000_000_000, consoleNs))
    putLine()
}
