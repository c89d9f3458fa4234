// Running a domain: the vCPU thread's exit loop, and stopping it from outside.

import Foundation
import Synchronization
import VisorABI
import VisorBoot
import VisorCore
import VisorDevices

/// A created domain, ready to run once.
public final class Domain: Sendable {
    public let configuration: DomainConfiguration
    let machine: any VirtualMachine
    let vcpu: any VirtualCPU
    let platform: Platform
    /// Why Visor stopped the guest, if it did; the first reason wins.
    private let stopReason = Mutex<String?>(nil)
    private let statistics = Mutex(ExitStatistics())

    /// Creates the domain: allocates RAM, loads the kernel and modules, creates the machine and
    /// its vCPU on the engine, and sets the vCPU's state for the image's boot protocol.
    /// `consoleOutput` receives every byte the guest writes to its serial port. `extraDevices`
    /// are attached to the I/O bus beside the standard ones (benchmarks and tests use this).
    public init(configuration: DomainConfiguration, extraDevices: [ExtraPortDevice] = [],
                consoleOutput: @escaping @Sendable (UInt8) -> Void) throws {
        self.configuration = configuration
        let memory = try GuestMemory(size: configuration.memoryBytes)
        let image = try BootLoader.load(kernel: configuration.kernel, commandLine: configuration.commandLine,
                                        modules: configuration.modules, into: memory)
        machine = try configuration.engine.makeMachine(memory: memory, options: MachineOptions(vcpuCount: 1))
        vcpu = try machine.makeVCPU(index: 0)
        try vcpu.setState(image.initialState)
        platform = try Platform(consoleOutput: consoleOutput)
        for extra in extraDevices {
            try platform.bus.attach(extra.device, base: extra.base, count: extra.count)
        }
    }

    /// Offers one byte of console input to the guest; false when its receive FIFO is full.
    public func sendConsoleInput(_ byte: UInt8) -> Bool {
        platform.receive(byte)
    }

    /// Asks the running guest to stop soon. Safe from any thread; the first reason is reported.
    public func requestStop(reason: String) {
        stopReason.withLock { if $0 == nil { $0 = reason } }
        vcpu.requestStop()
    }

    /// The exit statistics so far (complete once `run` has returned).
    public var exitStatistics: ExitStatistics { statistics.withLock { $0 } }

    /// Runs the guest on a dedicated vCPU thread until it ends, and says how it ended.
    public func run() -> DomainOutcome {
        let outcome = Mutex<DomainOutcome?>(nil)
        let thread = HostThread { [self] in
            let result = vcpuLoop()
            outcome.withLock { $0 = result }
        }
        thread.join()
        return outcome.withLock { $0 } ?? .crashed(reason: "the vCPU thread ended without an outcome", registers: "")
    }

    /// The exit loop: run the guest, dispatch its exit, repeat until something ends the run.
    private func vcpuLoop() -> DomainOutcome {
        var stats = ExitStatistics()
        let start = monotonicNanoseconds()
        defer {
            stats.wallNanoseconds = monotonicNanoseconds() &- start
            stats.unbacked = .init(portReads: platform.bus.unbackedReads, portWrites: platform.bus.unbackedWrites,
                                   mmioReads: platform.unbackedMMIOReads, mmioWrites: platform.unbackedMMIOWrites)
            let final = stats
            statistics.withLock { $0 = final }
        }
        while true {
            let entered = monotonicNanoseconds()
            let exit: Exit
            do {
                exit = try vcpu.run()
            } catch {
                return .crashed(reason: "the engine failed: \(error)", registers: registerDump())
            }
            let exited = monotonicNanoseconds()
            stats.recordRun(nanoseconds: exited &- entered)
            let outcome = handle(exit)
            stats.record(exit, handlingNanoseconds: monotonicNanoseconds() &- exited)
            if let outcome { return outcome }
        }
    }

    /// Handles one exit; returns an outcome when the run is over.
    private func handle(_ exit: Exit) -> DomainOutcome? {
        switch exit {
        case .portRead(let port, let size):
            vcpu.completeRead(UInt64(platform.bus.read(port: port, size: size)))
            return nil
        case .portWrite(let port, let size, let value):
            platform.bus.write(port: port, size: size, value: value)
            return platform.takeRequestedOutcome()
        case .mmioRead(let address, let size):
            // No MMIO devices yet: like an unclaimed bus cycle, reads float high.
            _ = address
            platform.unbackedMMIOReads &+= 1
            vcpu.completeRead(size >= 8 ? UInt64.max : (UInt64(1) << (UInt64(size) * 8)) &- 1)
            return nil
        case .mmioWrite:
            platform.unbackedMMIOWrites &+= 1
            return nil
        case .halt:
            // No interrupt controller yet (it comes with the platform issue), so nothing can
            // wake a halted vCPU: the run is over.
            return .halted(registers: registerDump())
        case .shutdown:
            return .crashed(reason: "triple fault (the vCPU shut down)", registers: registerDump())
        case .failedEntry(let reason):
            return .crashed(reason: "the engine could not enter the guest (hardware reason 0x\(String(reason, radix: 16)))",
                            registers: registerDump())
        case .internalError(let message):
            return .crashed(reason: message, registers: registerDump())
        case .interruptWindow, .msrRead, .msrWrite:
            return .crashed(reason: "unexpected exit \(exit)", registers: registerDump())
        case .stopped:
            if let reason = stopReason.withLock({ $0 }) { return .stopped(reason: reason) }
            return nil  // a stray signal: carry on
        }
    }

    private func registerDump() -> String {
        (try? vcpu.state().dump) ?? "(registers unavailable)"
    }
}

/// A device to attach to a domain's I/O bus at `[base, base + count)`.
public struct ExtraPortDevice: @unchecked Sendable {
    // Unchecked: the device is handed over to the domain and used by its vCPU thread only.
    public let device: any PortDevice
    public let base: UInt16
    public let count: UInt16
    public init(_ device: any PortDevice, base: UInt16, count: UInt16) {
        self.device = device; self.base = base; self.count = count
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the vDSO makes this a few nanoseconds, cheap enough per exit.
@inline(__always)
func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}
