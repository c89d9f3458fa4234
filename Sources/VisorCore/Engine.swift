// The protocols every CPU-virtualization engine implements: kvm today, interp and bt later.

/// A way of running guest code: hardware-assisted (`kvm`), emulation (`interp`), translation (`bt`).
public protocol Engine: Sendable {
    /// The name users pick it by (`--engine NAME`).
    var name: String { get }
    /// Creates a machine whose RAM is `memory`.
    func makeMachine(memory: GuestMemory, options: MachineOptions) throws -> any VirtualMachine
    /// How fast the guest's time-stamp counter ticks, in Hz: the host's TSC for `kvm`, the
    /// virtual clock's rate for software engines. Benchmarks turn guest TSC deltas into time with it.
    func timeStampCounterFrequency() -> Double
}

/// Settings that shape a machine as the guest sees it.
public struct MachineOptions: Sendable {
    /// Number of vCPUs the machine will have.
    public var vcpuCount: Int
    public init(vcpuCount: Int = 1) { self.vcpuCount = vcpuCount }
}

/// One guest machine on an engine: its RAM and its vCPUs.
public protocol VirtualMachine: AnyObject, Sendable {
    var memory: GuestMemory { get }
    /// Creates vCPU number `index` (0 is the bootstrap processor).
    func makeVCPU(index: Int) throws -> any VirtualCPU
}

/// One virtual CPU. `run`, `completeRead`, `state` and `setState` must be called from the single
/// thread that drives this vCPU; `requestStop` may be called from any thread.
public protocol VirtualCPU: AnyObject, Sendable {
    var index: Int { get }
    /// Runs guest code until the guest needs the hypervisor, and says why.
    func run() throws -> Exit
    /// Supplies the value of the port or MMIO read reported by the last exit
    /// (its low `size` bytes are used).
    func completeRead(_ value: UInt64)
    /// The vCPU's architectural registers.
    func state() throws -> X86State
    /// Replaces the vCPU's architectural registers.
    func setState(_ state: X86State) throws
    /// Makes a current or the next `run()` return `.stopped` soon. Thread-safe.
    func requestStop()
}
