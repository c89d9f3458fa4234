// perf's map of translated code: with VISOR_BT_PERF_MAP=1 in the environment, every block `bt`
// installs is named in /tmp/perf-PID.map, the file `perf report` reads for code it finds in
// anonymous executable memory ("START SIZE NAME", hexadecimal, one line per block). The name
// is the guest's RIP, so a profile of a guest's run shows which guest code the translated
// code's time went to; a kernel's System.map (booted with nokaslr) names those addresses.

#if canImport(Glibc)
import Glibc
#endif

/// The process's perf map, when asked for; shared by every vCPU's executor.
enum PerfMap {
    /// The map's descriptor, opened for appending (each batch is one write, so lines from
    /// several vCPUs do not interleave), or nil when the environment does not ask for it.
    static let descriptor: Int32? = {
        guard let value = getenv("VISOR_BT_PERF_MAP"), String(cString: value) == "1" else { return nil }
        let fd = open("/tmp/perf-\(getpid()).map", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        return fd >= 0 ? fd : nil
    }()

    /// Names the blocks of one installed batch.
    static func record(_ blocks: [(entry: UnsafeRawPointer, size: Int, rip: UInt64)]) {
        guard let fd = descriptor else { return }
        var text = ""
        for b in blocks {
            text += String(UInt(bitPattern: b.entry), radix: 16) + " " + String(b.size, radix: 16)
                + " guest:" + String(b.rip, radix: 16) + "\n"
        }
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }
}
