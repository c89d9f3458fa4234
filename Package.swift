// swift-tools-version: 6.0
// Visor: a hypervisor in Swift after the design of Xen. See ARCHITECTURE.md for the map.
// Linux only (/dev/kvm, epoll, /proc, prctl): SwiftPM's `platforms` can name only Apple platforms'
// minimum versions, so none is listed; Sources/Visor/Installation.swift stops a build elsewhere.
import PackageDescription

let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "Visor",
    products: [
        .executable(name: "visor", targets: ["visor"]),
        .library(name: "Visor", targets: ["Visor"]),
        // The toolstack's API (the fuzz package's `api` target drives its request parsing).
        .library(name: "VisorAPI", targets: ["VisorAPI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        // `visor serve`'s HTTP API on a Unix socket, and its clients: plain SwiftNIO (NIOHTTP1),
        // the smallest kept library that parses HTTP. It adds about 47 s of CPU to a clean debug
        // build of `visor` (43 s without it; 2 minutes more wall time on a loaded 2-core host).
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        // The contract shared with guests. Also compiled into guests under Embedded Swift,
        // so it must stay free of Foundation, existentials and allocation.
        .target(name: "VisorABI", swiftSettings: strict),
        .target(name: "VisorCore", dependencies: ["VisorABI"], swiftSettings: strict),
        .target(name: "CKVM"),
        // Host calls Swift cannot make directly (variadic C declarations such as prctl).
        .target(name: "CVisorHost"),
        .target(name: "VisorKVM", dependencies: ["VisorCore", "CKVM", "VisorX86", "VisorX86Decode"], swiftSettings: strict),
        .target(name: "VisorDevices", dependencies: ["VisorCore"], swiftSettings: strict),
        .target(name: "VisorBoot", dependencies: ["VisorCore"], swiftSettings: strict),
        // Paravirtual I/O: the virtio-mmio transport, split virtqueues and the device types
        // (block), as pure state machines over guest RAM; Visor gives them threads and wiring.
        // CVisorHost for fallocate's hole punching (a GNU extension Glibc's module hides).
        .target(name: "VisorVirtio", dependencies: ["VisorCore", "CVisorHost"], swiftSettings: strict),
        // The ACPI tables a PC guest's OS reads, as pure bytes from a description of the platform.
        .target(name: "VisorACPI", swiftSettings: strict),
        // The software CPU: the decoder (bytes → DecodedInstruction, tables as data) on its own,
        // then the interpreter, MMU and exceptions, and the `interp` engine.
        .target(name: "VisorX86Decode", swiftSettings: strict),
        // Header-only host atomics on guest-RAM addresses (LOCK-prefixed instructions across vCPUs).
        .target(name: "CX86Atomics"),
        // The interpreter mutates X86CPU's and X86Machine's stored properties on every
        // instruction; dynamic exclusivity checks on them cost more than half the run time
        // (measured with perf), so those properties are `@exclusivity(unchecked)` (one thread
        // drives a vCPU), and no unsafe flag is needed: other packages can depend on Visor.
        .target(name: "VisorX86", dependencies: ["VisorCore", "VisorX86Decode", "CX86Atomics"], swiftSettings: strict),
        // Binary translation (`bt`): guest code rewritten into host x86-64 code at run time,
        // over the software CPU (which runs what is not translated and everything around it).
        .target(name: "VisorBT", dependencies: ["VisorCore", "VisorX86", "VisorX86Decode"], swiftSettings: strict),
        // Xen's schedulers as pure policies on an injectable clock: no threads, no engines.
        .target(name: "VisorSched", swiftSettings: strict),
        .target(
            name: "Visor",
            dependencies: ["VisorABI", "VisorCore", "VisorKVM", "VisorDevices", "VisorBoot", "VisorACPI", "VisorX86",
                           "VisorBT", "VisorSched", "VisorVirtio", "CVisorHost"],
            swiftSettings: strict),
        // `visor bench`: the benchmarks, their guests' glue and QEMU as the reference beside them.
        // The runtime (`Visor`) depends on none of it.
        .target(
            name: "VisorBench", dependencies: ["Visor", "VisorAPI", "VisorABI", "VisorCore", "VisorKVM", "VisorSched", "CVisorHost"],
            swiftSettings: strict),
        // The toolstack's transport: the HTTP+JSON API server on a Unix socket (`visor serve`),
        // its client (`visor list`, `create`, ...) and the daemon's socket and signal handling.
        .target(
            name: "VisorAPI",
            dependencies: ["Visor", .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "NIOHTTP1", package: "swift-nio")],
            swiftSettings: strict),
        .executableTarget(
            name: "visor",
            dependencies: ["Visor", "VisorAPI", "VisorBench", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict),

        .testTarget(name: "VisorCoreTests", dependencies: ["VisorCore"], swiftSettings: strict),
        .testTarget(name: "VisorDevicesTests", dependencies: ["VisorDevices"], swiftSettings: strict),
        .testTarget(name: "VisorVirtioTests", dependencies: ["VisorVirtio", "VisorCore"], swiftSettings: strict),
        .testTarget(name: "VisorBootTests", dependencies: ["VisorBoot"], swiftSettings: strict),
        .testTarget(name: "VisorACPITests", dependencies: ["VisorACPI"], swiftSettings: strict),
        .testTarget(name: "VisorX86DecodeTests", dependencies: ["VisorX86Decode"], swiftSettings: strict),
        // Runs instruction bytes on the host CPU, the oracle for VisorX86Tests' differential tests.
        .target(name: "CX86Native", path: "Tests/CX86Native"),
        .testTarget(
            name: "VisorX86Tests", dependencies: ["VisorX86", "VisorX86Decode", "VisorCore", "CX86Native"],
            swiftSettings: strict),
        .testTarget(
            name: "VisorBTTests", dependencies: ["VisorBT", "VisorX86", "VisorX86Decode", "VisorCore"],
            swiftSettings: strict),
        .testTarget(name: "VisorKVMTests", dependencies: ["VisorKVM", "VisorCore"], swiftSettings: strict),
        .testTarget(name: "VisorSchedTests", dependencies: ["VisorSched"], swiftSettings: strict),
        .testTarget(
            name: "VisorIntegrationTests", dependencies: ["Visor", "VisorAPI", "VisorBench", "VisorKVM", "VisorBoot", "visor"],
            swiftSettings: strict),
    ]
)
