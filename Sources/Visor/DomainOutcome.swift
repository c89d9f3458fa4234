// How a domain's run ended, and the process exit statuses `visor run` gives for it.

/// How a domain's run ended.
public enum DomainOutcome: Sendable, Equatable {
    /// The guest powered the machine off (ACPI PM1a SLP_EN): success.
    case poweredOff
    /// The guest wrote v to the debug-exit port, asking for `status` = `(v << 1) | 1`.
    case debugExit(status: Int)
    /// Every vCPU halted with interrupts disabled or waits for a start-up IPI (never started,
    /// INIT, vcpu_op down): nothing can wake the guest.
    case halted(registers: String)
    /// The guest crashed (triple fault) or the engine could not go on; `registers` is the dump.
    case crashed(reason: String, registers: String)
    /// The guest asked to be restarted (`sched_op` reboot, the 8042's reset line); `how` says
    /// which way. `visor run` ends there; under `visor serve` the domain's `on_reboot` decides.
    case rebooted(how: String)
    /// Visor stopped the guest: the user asked, or the time limit passed.
    case stopped(reason: String)

    /// The status `visor run` exits with. Odd values belong to the guest (debug-exit), 0 is a
    /// clean power-off; Visor's own outcomes are even, so the two never collide.
    public var exitStatus: Int32 {
        switch self {
        case .poweredOff: return 0
        case .debugExit(let status): return Int32(truncatingIfNeeded: status)
        case .crashed: return ExitStatus.guestCrashed
        case .halted: return ExitStatus.guestHalted
        case .rebooted, .stopped: return ExitStatus.stopped
        }
    }

    /// One line for stderr, or nil when the outcome speaks for itself.
    public var message: String? {
        switch self {
        case .poweredOff: return nil
        case .debugExit: return nil
        case .halted(let registers):
            return "every vCPU of the guest is halted with interrupts disabled or waits for a start-up IPI; nothing can wake it\n\(registers)"
        case .crashed(let reason, let registers): return "the guest crashed: \(reason)\n\(registers)"
        case .rebooted(let how):
            return "the guest was stopped: it asked to reboot (\(how)); `visor run` does not restart guests (`visor serve` does, as its on_reboot says)"
        case .stopped(let reason): return "the guest was stopped: \(reason)"
        }
    }
}

/// The process exit statuses Visor itself uses (guest statuses are 0 and odd numbers).
public enum ExitStatus {
    public static let guestCrashed: Int32 = 2
    public static let guestHalted: Int32 = 4
    public static let stopped: Int32 = 6
    /// Bad input: an unreadable or malformed kernel, module or option (sysexits' EX_DATAERR).
    public static let badInput: Int32 = 65
    /// The engine is not available on this host (EX_UNAVAILABLE).
    public static let unavailable: Int32 = 69
    /// Visor failed in a way that is not the guest's or the user's fault (EX_SOFTWARE).
    public static let internalFailure: Int32 = 70
}
