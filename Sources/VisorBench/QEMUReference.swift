// QEMU as the side-by-side reference: the same guest ELF under `qemu-system-x86_64 -accel tcg`
// on QEMU's `pc` machine, with the debug-exit device at Visor's port and the serial console on
// standard output. `VISOR_QEMU` names another QEMU binary to compare with (a build of one's own).

import Foundation

enum QEMUReference {
    /// Why there is no QEMU to compare with.
    struct Missing: Error, CustomStringConvertible {
        var description: String
    }

    /// The QEMU to run: `VISOR_QEMU` when set, else where Debian installs it.
    static var located: Result<String, Missing> {
        if let chosen = ProcessInfo.processInfo.environment["VISOR_QEMU"] {
            return FileManager.default.isExecutableFile(atPath: chosen)
                ? .success(chosen) : .failure(Missing(description: "VISOR_QEMU names '\(chosen)', which is not an executable file"))
        }
        let found = ["/usr/bin/qemu-system-x86_64", "/usr/local/bin/qemu-system-x86_64"]
            .first { FileManager.default.isExecutableFile(atPath: $0) }
        return found.map { .success($0) }
            ?? .failure(Missing(description: "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"))
    }

    /// Runs `image` under QEMU's TCG and returns its console output; throws unless it exits 0.
    static func run(image: URL, commandLine: String, cpus: Int = 1, cpuModel: String? = nil) throws -> String {
        let qemu: String
        switch located {
        case .success(let path): qemu = path
        case .failure(let missing): throw BenchmarkError.referenceFailed(missing.description)
        }
        var arguments = ["-accel", "tcg", "-m", "128", "-smp", "\(cpus)", "-display", "none", "-nodefaults",
                         "-no-reboot", "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
                         "-kernel", image.path]
        if let cpuModel { arguments += ["-cpu", cpuModel] }
        if !commandLine.isEmpty { arguments += ["-append", commandLine] }
        let (status, text) = try ConsoleChild.run(qemu, arguments)
        guard status == 0 else { throw BenchmarkError.referenceFailed("QEMU exited \(status):\n\(text)") }
        return text
    }
}
