// Multiprocessor start-up and per-CPU helpers.
//
// `SMP.start` copies the trampoline (smp.S) to 0x70000, sends INIT to all other CPUs, waits
// 10 ms, sends SIPI (vector 0x70) twice 200 us apart, and waits for the APs to report in: until
// `expected` CPUs (counting the BSP) are online, or 200 ms after the first SIPI. Each AP loads
// the IDT, enables its APIC, marks itself online, calls the entry callback with its CPU index
// (1, 2, ... in order of arrival) and then idles in `sti; hlt`, taking interrupts, for good.
// The waits are `Timer.sleep`s (halted), so `Platform.setUp` must have run.

public typealias APEntry = @convention(c) (UInt32) -> Void

public enum SMP {
    public static let trampolinePage: UInt32 = 0x70     // SIPI vector: 0x70000
    public static let maxCPUs = Int(GK_MAX_CPUS)

    nonisolated(unsafe) static var apEntry: APEntry? = nil

    static let onlineField: UInt32 = 3
    static let apicIDField: UInt32 = 2

    /// This CPU's index: 0 on the BSP.
    public static var cpuIndex: UInt32 { gk_cpu_index() }

    /// Whether CPU `index` has reported in (the BSP always has).
    public static func isOnline(_ index: UInt32) -> Bool {
        index == 0 || gk_load64(gk_percpu_field(index, onlineField)) != 0
    }

    /// The APIC ID CPU `index` read from its APIC.
    public static func apicID(ofCPU index: UInt32) -> UInt32 {
        UInt32(truncatingIfNeeded: gk_load64(gk_percpu_field(index, apicIDField)))
    }

    /// CPUs online, the BSP included.
    public static var onlineCount: Int { Int(gk_load64(&gk_cpus_online)) }

    /// Starts the APs; returns how many CPUs are online (the BSP included). `expected` (e.g.
    /// from `cpus=`) lets it return as soon as that many are up. The wait is long (5 s, Linux
    /// waits 10): on this host's kvm an AP's start-up code runs emulated by the host kernel, and
    /// with four vCPUs on a loaded 2-core host one AP missed a 200 ms wait.
    public static func start(expected: Int? = nil, timeoutNanoseconds: UInt64 = 5_000_000_000,
                             entry: APEntry) -> Int {
        let size = Int(gk_trampoline_size())
        let target = UnsafeMutableRawPointer(bitPattern: UInt(GK_TRAMPOLINE_BASE))!
        target.copyMemory(from: UnsafeRawPointer(bitPattern: UInt(gk_trampoline_address()))!, byteCount: size)
        // EFER for the APs: the BSP's LME and NXE (and SCE), without the read-only LMA.
        let efer = gk_rdmsr(0xc000_0080) & ~UInt64(1 << 10)
        target.storeBytes(of: UInt32(truncatingIfNeeded: efer), toByteOffset: Int(gk_trampoline_efer_offset()),
                          as: UInt32.self)
        apEntry = entry
        gk_percpu_at(0).pointee.online = 1

        APIC.sendInit()
        Timer.sleep(nanoseconds: 10_000_000)
        APIC.sendStartup(page: trampolinePage)
        let firstSIPI = gk_rdtsc()
        Timer.sleep(nanoseconds: 200_000)
        APIC.sendStartup(page: trampolinePage)

        let deadline = firstSIPI &+ Timing.tscTicks(nanoseconds: timeoutNanoseconds)
        while gk_rdtsc() < deadline {
            if let expected, onlineCount >= expected { break }
            Timer.sleep(nanoseconds: 1_000_000)
        }
        return onlineCount
    }
}

/// Called by smp.S on each AP in long mode, on its own stack.
@_cdecl("guestkit_ap_entry")
public func guestkitAPEntry(index: UInt32) -> Never {
    Interrupts.load()
    APIC.enable()
    gk_store64(gk_percpu_field(index, SMP.onlineField), 1)
    _ = gk_fetch_add64(&gk_cpus_online, 1)
    if let entry = SMP.apEntry { entry(index) }
    while true {
        gk_sti_hlt()
    }
}

extension Console {
    /// Serialises whole lines between CPUs (a spinlock; never take it in an interrupt handler).
    public static func lock() { gk_spin_lock(&gk_console_lock) }
    public static func unlock() { gk_spin_unlock(&gk_console_lock) }
    public static func withLock<R>(_ body: () -> R) -> R {
        lock()
        let r = body()
        unlock()
        return r
    }
}
