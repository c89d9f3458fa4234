// What a domain is made from: its kernel, RAM, command line, engine and vCPUs.

import Foundation
import Synchronization
import VisorABI
import VisorBoot
import VisorCore
import VisorDevices

@_exported import struct VisorBoot.BootModule
@_exported import enum VisorSched.SchedulerKind

/// Everything needed to create a domain.
public struct DomainConfiguration: Sendable {
    /// Shown in messages and, later, in `xl list`-style tables.
    public var name: String
    /// Where the kernel came from, for messages.
    public var kernelDescription: String
    public var kernel: [UInt8]
    public var memoryBytes: UInt64
    public var commandLine: String
    public var modules: [BootModule]
    /// A Linux kernel's initial RAM disk (`--initrd`, xl.cfg `ramdisk`); a multiboot kernel
    /// gets it as its first module.
    public var initrd: BootModule?
    public var engine: any Engine
    /// Virtual CPUs: vCPU 0 boots, the others wait for the guest's start-up IPIs.
    public var vcpuCount: Int
    /// Disks, each a virtio-blk device on virtio-mmio (`--disk`, xl.cfg `disk`), in order:
    /// Linux names them vda, vdb, ...
    public var disks: [DiskConfiguration] = []
    /// Network interfaces, each a virtio-net device on a host TAP (`--net`, xl.cfg `vif`), placed
    /// after the disks: Linux names them eth0, eth1, ...
    public var networks: [NetworkConfiguration] = []
    /// The console device (`--console`, xl.cfg `console`): the 16550 alone, or a virtio-console too.
    public var console: ConsoleDevice = .serial

    /// RAM of a domain whose configuration names none.
    public static let defaultMemoryBytes: UInt64 = 128 << 20

    public init(name: String, kernelDescription: String, kernel: [UInt8], memoryBytes: UInt64 = defaultMemoryBytes,
                commandLine: String = "", modules: [BootModule] = [], initrd: BootModule? = nil, engine: any Engine,
                vcpuCount: Int = 1) {
        self.name = name; self.kernelDescription = kernelDescription; self.kernel = kernel
        self.initrd = initrd
        self.vcpuCount = vcpuCount
        self.memoryBytes = memoryBytes; self.commandLine = commandLine; self.modules = modules; self.engine = engine
    }
}
