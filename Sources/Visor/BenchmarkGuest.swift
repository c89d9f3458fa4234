// What the guest-driven benchmarks share: a built-in guest run as a domain with its console
// collected in memory, and a clear error when it does not power off.

import Foundation
import Synchronization
import VisorCore

enum BenchmarkGuest {
    /// The engine called `name`, or `BenchmarkError.guestFailed` saying why there is none.
    static func engine(named name: String) throws -> any Engine {
        guard let engine = EngineRegistry.engine(named: name) else {
            throw BenchmarkError.guestFailed(EngineRegistry.problem(withName: name) ?? name)
        }
        return engine
    }

    /// A domain configuration for the guest ELF at `image`.
    static func configuration(image: URL, commandLine: String, engine: any Engine, vcpus: Int = 1,
                              memoryBytes: UInt64 = 64 << 20, name: String? = nil) throws -> DomainConfiguration {
        DomainConfiguration(name: name ?? image.deletingPathExtension().lastPathComponent, kernelDescription: image.path,
                            kernel: [UInt8](try Data(contentsOf: image)), memoryBytes: memoryBytes,
                            commandLine: commandLine, engine: engine, vcpuCount: vcpus)
    }

    /// Runs the guest at `image` on the engine called `engineName` until it ends; returns its
    /// console output and exit statistics, or throws unless it powered off.
    static func run(image: URL, commandLine: String, engine engineName: String, vcpus: Int = 1,
                    memoryBytes: UInt64 = 64 << 20) throws -> (text: String, statistics: ExitStatistics) {
        let engine = try engine(named: engineName)
        let output = ConsoleBuffer()
        let domain = try Domain(configuration: configuration(image: image, commandLine: commandLine, engine: engine,
                                                             vcpus: vcpus, memoryBytes: memoryBytes)) { output.append($0) }
        let outcome = domain.run()
        let text = output.text
        guard outcome == .poweredOff else {
            throw BenchmarkError.guestFailed("\(image.lastPathComponent) on \(engineName): \(outcome)\n\(text.suffix(4000))")
        }
        return (text, domain.exitStatistics)
    }
}

/// A guest's console output collected in memory.
final class ConsoleBuffer: Sendable {
    private let bytes = Mutex<[UInt8]>([])
    func append(_ byte: UInt8) { bytes.withLock { $0.append(byte) } }
    var text: String { String(decoding: bytes.withLock { $0 }, as: UTF8.self) }
}
