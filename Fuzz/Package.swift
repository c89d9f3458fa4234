// swift-tools-version: 6.0
// Visor's libFuzzer targets: a package of its own, so the main package's `swift build` and
// `swift test` neither build nor wait for them. Build and run them with `Fuzz/run` (README.md).
//
// The main package is reached through the symlink `.build/visor` that `Fuzz/run` makes to the
// checkout (a path dependency's identity is its directory name, and a checkout named `fuzz`
// would clash with this package's own). Every module is compiled by `Fuzz/run` with
// `-sanitize=fuzzer,address` (coverage and AddressSanitizer) and `-enable-testing`, so a target
// can reach internal entry points with `@testable import`.
import PackageDescription

let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]

/// One executable per fuzz target: `Fuzz<Name>` in `Sources/Fuzz<Name>/`, exporting
/// `LLVMFuzzerTestOneInput` (libFuzzer supplies `main`).
func fuzzTarget(_ name: String) -> Target {
    .executableTarget(
        name: "Fuzz\(name)",
        dependencies: ["FuzzSupport", .product(name: "Visor", package: "Visor")],
        swiftSettings: strict)
}

let package = Package(
    name: "VisorFuzz",
    dependencies: [.package(name: "Visor", path: ".build/visor")],
    targets: [
        // What every target shares: reading an input as typed values, a clock moved by hand.
        .target(name: "FuzzSupport", dependencies: [.product(name: "Visor", package: "Visor")], swiftSettings: strict),
        fuzzTarget("Decoder"),
        fuzzTarget("Interpreter"),
        // The same inputs on the `bt` engine (its FuzzInterpreter.swift is a symlink).
        fuzzTarget("BT"),
        fuzzTarget("Hypercall"),
        fuzzTarget("UART"),
        fuzzTarget("PIC"),
        fuzzTarget("PIT"),
        fuzzTarget("RTC"),
        fuzzTarget("LocalAPIC"),
        fuzzTarget("PortBus"),
        fuzzTarget("Platform"),
        fuzzTarget("ELF"),
        fuzzTarget("Multiboot"),
        fuzzTarget("LongMode"),
        fuzzTarget("Linux"),
        fuzzTarget("XLConfig"),
        fuzzTarget("Virtio"),
        fuzzTarget("VirtioNet"),
        fuzzTarget("VirtioConsole"),
        .executableTarget(
            name: "FuzzAPI",
            dependencies: ["FuzzSupport", .product(name: "Visor", package: "Visor"),
                           .product(name: "VisorAPI", package: "Visor")],
            swiftSettings: strict),
    ]
)
