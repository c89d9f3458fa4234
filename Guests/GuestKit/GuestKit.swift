// GuestKit: the small runtime every Visor guest is built with.
//
// Boot flow: Boot/multiboot.S enters long mode and calls `guestkit_start(magic, info)`
// below, which initializes the console, records the multiboot info and calls the guest's
// `guestMain()` (one per guest directory, same Swift module). If `guestMain` returns, the
// guest exits with status 0.
//
// Exit convention (`GuestKit.exit`):
// - status 0: power off through the ACPI PM1a control register of QEMU's `pc` machine,
//   a 16-bit write of SLP_EN (0x2000, sleep type 0 = soft off) to port 0x604. QEMU exits
//   with status 0; Visor treats the same write as "powered off, status 0".
// - status v != 0: a 32-bit write of v to the isa-debug-exit port (`PlatformPorts.debugExit`,
//   0xf4). QEMU and Visor end the guest with process status (v << 1) | 1.
// - If the power-off write returns (no such device; or QEMU, which acts on it a little
//   later, has not stopped the vCPU within about a second), the guest falls back to the
//   debug-exit port (status 0 then shows as 1), then halts forever (`cli; hlt`, or a
//   `pause` loop at CPL3 where `hlt` would fault).

/// Namespace for the guest runtime.
public enum GuestKit {
    /// Ends the guest. See the exit convention at the top of this file.
    /// After `Paravirt.setUp` chose PV, status 0 is `sched_op(shutdown, poweroff)` (at CPL0);
    /// other statuses use the debug-exit port in both modes, so exit statuses stay the same.
    public static func exit(_ status: UInt32) -> Never {
        if Paravirt.isPV { Paravirt.ops.shutdown(status) }
        exitNative(status)
    }

    /// The native exit path (ports), whatever the paravirt mode.
    public static func exitNative(_ status: UInt32) -> Never {
        Console.flush()
        if status == 0 {
            gk_outw(PlatformPorts.acpiPM1aControl, PlatformPorts.acpiSleepEnable)
            // QEMU acts on the power-off request asynchronously, in its main loop, while
            // this vCPU keeps running: wait (bounded, about a second) before falling back,
            // or the debug-exit write below would win the race. Visor stops at the write.
            let start = gk_rdtsc()
            var spins: UInt64 = 0
            while spins < 100_000_000 && gk_rdtsc() &- start < 3_000_000_000 {
                gk_pause()
                spins += 1
            }
        }
        gk_outl(PlatformPorts.debugExit, status)
        haltForever()
    }

    /// Stops this CPU for good: `cli; hlt` at CPL0, a `pause` loop at CPL3.
    public static func haltForever() -> Never {
        if gk_cpl() == 0 {
            while true {
                gk_cli()
                gk_hlt()
            }
        }
        while true { gk_pause() }
    }

    /// The multiboot info the loader passed, if the magic was right.
    public static var multiboot: MultibootInfo? { MultibootInfo.current }

    /// The command line from the multiboot info, or "" when there is none.
    public static var commandLine: String { MultibootInfo.current?.commandLine ?? "" }

    /// Drops to CPL3 and runs `entry` there on the user stack with IOPL 3, so it may use
    /// port I/O (console, exit) directly. `entry` must not return; end it with `exit`.
    /// Interrupts stay off (IF = 0) unless `interruptible`: then IF = 1, and the guest must
    /// have loaded a TSS whose RSP0 is a kernel stack (`installTaskState(kernelStackTop:)`),
    /// where interrupts from CPL3 are taken.
    public static func enterUserMode(_ entry: @convention(c) () -> Void, interruptible: Bool = false) -> Never {
        guestkit_enter_user(entry, interruptible ? 1 : 0)
    }

    /// Current privilege level (0 kernel, 3 user).
    public static var cpl: UInt32 { gk_cpl() }
}

/// Called by the boot stub in long mode with the multiboot magic and info pointer.
@_cdecl("guestkit_start")
public func guestkitStart(magic: UInt32, info: UInt32) {
    Console.initialize()
    MultibootInfo.record(magic: magic, address: info)
    guestMain()
    GuestKit.exit(0)
}

/// C entry to `GuestKit.exit`, used by the boot stub and by `abort()`.
@_cdecl("guestkit_exit")
public func guestkitExit(status: UInt32) -> Never {
    GuestKit.exit(status)
}
