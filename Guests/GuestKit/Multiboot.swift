// The multiboot v1 information structure (the loader passes its physical address in EBX).
// GuestKit reads: flags (offset 0), mem_lower/mem_upper (4, 8; valid when flags bit 0),
// cmdline (16; a NUL-terminated string's physical address, valid when flags bit 2).
// Memory below 4 GiB is identity mapped, so physical addresses are pointers.

public struct MultibootInfo {
    /// EAX value a multiboot v1 loader passes.
    public static let bootloaderMagic: UInt32 = 0x2BAD_B002

    public static let flagMemory: UInt32 = 1 << 0
    public static let flagCommandLine: UInt32 = 1 << 2

    public let address: UInt32
    public let flags: UInt32
    /// KiB of memory below 1 MiB, if flags bit 0.
    public let memoryLowerKiB: UInt32?
    /// KiB of memory above 1 MiB, if flags bit 0.
    public let memoryUpperKiB: UInt32?
    /// The command line, if flags bit 2 (at most 4 KiB read).
    public let commandLine: String?

    nonisolated(unsafe) static var current: MultibootInfo? = nil

    static func record(magic: UInt32, address: UInt32) {
        guard magic == bootloaderMagic, address != 0 else {
            current = nil
            return
        }
        current = MultibootInfo(address: address)
    }

    init(address: UInt32) {
        let words = UnsafePointer<UInt32>(bitPattern: UInt(address))!
        self.address = address
        flags = words[0]
        if flags & MultibootInfo.flagMemory != 0 {
            memoryLowerKiB = words[1]
            memoryUpperKiB = words[2]
        } else {
            memoryLowerKiB = nil
            memoryUpperKiB = nil
        }
        if flags & MultibootInfo.flagCommandLine != 0, words[4] != 0 {
            let p = UnsafePointer<UInt8>(bitPattern: UInt(words[4]))!
            var bytes: [UInt8] = []
            var i = 0
            while i < 4096 && p[i] != 0 {
                bytes.append(p[i])
                i += 1
            }
            commandLine = String(decoding: bytes, as: UTF8.self)
        } else {
            commandLine = nil
        }
    }

    /// The value of the first `key=value` word on the command line, if any.
    /// (QEMU passes the kernel's file name as the first word; Visor may too.)
    public func argument(_ key: String) -> String? {
        guard let line = commandLine else { return nil }
        for word in line.utf8.split(separator: 0x20) {
            let bytes = Array(word)
            let k = Array(key.utf8)
            if bytes.count > k.count && bytes[k.count] == 0x3d && Array(bytes[0..<k.count]) == k {
                return String(decoding: bytes[(k.count + 1)...], as: UTF8.self)
            }
        }
        return nil
    }

    /// `argument(key)` parsed as an unsigned decimal integer.
    public func unsignedArgument(_ key: String) -> UInt64? {
        guard let text = argument(key), !text.isEmpty else { return nil }
        var value: UInt64 = 0
        for b in text.utf8 {
            guard b >= 0x30 && b <= 0x39 else { return nil }
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(UInt64(b - 0x30))
            if o1 || o2 { return nil }
            value = s
        }
        return value
    }
}
