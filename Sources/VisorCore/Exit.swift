// The one value every engine produces when the guest needs the hypervisor.
//
// Engine-specific code only decodes its own exit format into `Exit`; everything after that
// (devices, hypercalls, the scheduler, the domain's lifecycle) is shared and engine-blind.

/// Why a vCPU stopped running guest code.
public enum Exit: Sendable, Equatable {
    /// The guest read `size` bytes (1, 2 or 4) from an I/O port. Answer with
    /// `VirtualCPU.completeRead(_:)` before running the vCPU again.
    case portRead(port: UInt16, size: UInt8)
    /// The guest wrote `value` (its low `size` bytes) to an I/O port.
    case portWrite(port: UInt16, size: UInt8, value: UInt32)
    /// The guest read `size` bytes (1 to 8) at a physical address that is not RAM.
    /// Answer with `VirtualCPU.completeRead(_:)`.
    case mmioRead(address: GuestPhysicalAddress, size: UInt8)
    /// The guest wrote `size` bytes at a physical address that is not RAM.
    case mmioWrite(address: GuestPhysicalAddress, size: UInt8, value: UInt64)
    /// The guest executed HLT with nothing to wake it inside the engine. RIP is past the HLT;
    /// the vCPU stays halted until Visor injects an interrupt (or an INIT/SIPI restarts it).
    case halt
    /// The guest can now take a maskable interrupt, as asked for with
    /// `VirtualCPU.requestInterruptWindow(true)`.
    case interruptWindow
    /// The guest read a model-specific register the engine leaves to Visor's platform (see
    /// `PlatformMSR`). Answer with `VirtualCPU.completeRead(_:)` (EDX:EAX as one value).
    case msrRead(index: UInt32)
    /// The guest wrote a model-specific register the engine leaves to Visor's platform.
    case msrWrite(index: UInt32, value: UInt64)
    /// The guest shut the machine down, typically a triple fault. The vCPU cannot run again.
    case shutdown
    /// The run was cut short by `VirtualCPU.requestStop()` (preemption, Ctrl-C, another vCPU).
    case stopped
    /// The engine could not enter the guest; `reason` is the engine's own code
    /// (for `kvm`, `hardware_entry_failure_reason`).
    case failedEntry(reason: UInt64)
    /// The engine hit a condition it cannot handle (for `kvm`, `KVM_EXIT_INTERNAL_ERROR` and
    /// exit reasons Visor does not know). The message says which.
    case internalError(String)
    /// The engine could not run one instruction itself and Visor's software CPU carried it out
    /// instead (for `kvm`: an instruction the host kernel failed to emulate, see
    /// `KVMInstructionFallback`); the vCPU simply runs on. `instruction` names it for statistics
    /// (the mnemonic, with ` #UD` when the CPU does not offer it and the guest got #UD).
    case instructionEmulated(instruction: String)
    /// The vCPU has made no exit for a long time and sits at the same instruction (for `kvm`: a
    /// host kernel spinning on an instruction it never completes; see `KVMStallWatchdog`). The
    /// vCPU can run on; `report` says where it is and what the instruction is, for the user.
    case stalled(report: String)

    /// Short names for statistics, one per case, in `reasonIndex` order.
    public static let reasonNames = ["io-read", "io-write", "mmio-read", "mmio-write", "halt", "shutdown",
                                     "stopped", "failed-entry", "internal-error", "irq-window", "msr-read",
                                     "msr-write", "emulated", "stalled"]

    /// This exit's position in `reasonNames`: a cheap key for per-exit counters.
    public var reasonIndex: Int {
        switch self {
        case .portRead: return 0
        case .portWrite: return 1
        case .mmioRead: return 2
        case .mmioWrite: return 3
        case .halt: return 4
        case .shutdown: return 5
        case .stopped: return 6
        case .failedEntry: return 7
        case .internalError: return 8
        case .interruptWindow: return 9
        case .msrRead: return 10
        case .msrWrite: return 11
        case .instructionEmulated: return 12
        case .stalled: return 13
        }
    }

    /// A short name for statistics: one per case.
    public var reasonName: String { Self.reasonNames[reasonIndex] }
}
