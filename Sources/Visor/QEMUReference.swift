// QEMU as the side-by-side reference: the same guest ELF under `qemu-system-x86_64 -accel tcg`
// on QEMU's `pc` machine, with the debug-exit device at Visor's port and the serial console on
// standard output.

import Foundation

enum QEMUReference {
    /// Where QEMU is installed, if it is.
    static var path: String? {
        ["/usr/bin/qemu-system-x86_64", "/usr/local/bin/qemu-system-x86_64"]
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Runs `image` under QEMU's TCG and returns its console output; throws unless it exits 0.
    static func run(image: URL, commandLine: String, cpus: Int = 1, cpuModel: String? = nil) throws -> String {
        guard let qemu = path else {
            throw BenchmarkError.referenceFailed("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
        }
        var arguments = ["-accel", "tcg", "-m", "128", "-smp", "\(cpus)", "-display", "none", "-nodefaults",
                         "-no-reboot", "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
                         "-kernel", image.path]
        if let cpuModel { arguments += ["-cpu", cpuModel] }
        if !commandLine.isEmpty { arguments += ["-append", commandLine] }
        let (status, text) = try HostProcess.run(qemu, arguments)
        guard status == 0 else { throw BenchmarkError.referenceFailed("QEMU exited \(status):\n\(text)") }
        return text
    }
}
