// Builders for the images the tests load: ELF32/ELF64 executables with program headers and an
// optional multiboot header, and raw a.out-kludge images. Written field by field from the ELF and
// multiboot specifications so each test can bend exactly one field.

import VisorBoot
import VisorCore

/// One program header and its file bytes.
struct TestSegment {
    var physicalAddress: UInt64
    var virtualAddress: UInt64
    var data: [UInt8]
    var memorySize: UInt64
    var type: UInt32 = 1

    init(at physicalAddress: UInt64, virtual: UInt64? = nil, data: [UInt8], memorySize: UInt64? = nil,
         type: UInt32 = 1) {
        self.physicalAddress = physicalAddress
        self.virtualAddress = virtual ?? physicalAddress
        self.data = data
        self.memorySize = memorySize ?? UInt64(data.count)
        self.type = type
    }
}

/// A multiboot v1 header to embed.
struct TestMultibootHeader {
    var flags: UInt32 = MultibootHeader.flagPageAlignModules | MultibootHeader.flagMemoryInfo
    /// Added to the correct checksum; non-zero makes it wrong.
    var checksumError: UInt32 = 0
    /// a.out-kludge fields: header, load, load_end, bss_end, entry.
    var addresses: [UInt32] = []

    var bytes: [UInt8] {
        var b: [UInt8] = []
        b.le(MultibootHeader.magic)
        b.le(flags)
        b.le((0 &- MultibootHeader.magic &- flags) &+ checksumError)
        for a in addresses { b.le(a) }
        return b
    }
}

/// An ELF executable under construction.
struct TestELF {
    var is64: Bool
    var machine: UInt16? = nil
    var type: UInt16 = 2
    var entry: UInt64
    var segments: [TestSegment]
    var multiboot: TestMultibootHeader? = nil

    /// Where the multiboot header goes in the file.
    static let multibootOffset = 0x200
    /// Where the first segment's bytes go in the file.
    static let firstDataOffset = 0x1000

    var headerSize: Int { is64 ? 64 : 52 }
    var phentsize: Int { is64 ? 56 : 32 }
    /// Program headers follow the ELF header.
    var phoff: Int { headerSize }

    /// File offset of each segment's bytes.
    var dataOffsets: [Int] {
        var offsets: [Int] = []
        var next = Self.firstDataOffset
        for s in segments {
            offsets.append(next)
            next += (s.data.count + 15) & ~15
        }
        return offsets
    }

    var bytes: [UInt8] {
        let offsets = dataOffsets
        let size = max(Self.firstDataOffset, zip(segments, offsets).map { $1 + $0.data.count }.max() ?? 0)
        var b = [UInt8](repeating: 0, count: size)
        b.replace(at: 0, with: [0x7f, 0x45, 0x4c, 0x46, is64 ? 2 : 1, 1, 1, 0])
        b.put(UInt16(type), at: 16)
        b.put(machine ?? (is64 ? 62 : 3), at: 18)
        b.put(UInt32(1), at: 20)
        if is64 {
            b.put(entry, at: 24); b.put(UInt64(phoff), at: 32)
            b.put(UInt16(64), at: 52); b.put(UInt16(phentsize), at: 54); b.put(UInt16(segments.count), at: 56)
        } else {
            b.put(UInt32(truncatingIfNeeded: entry), at: 24); b.put(UInt32(phoff), at: 28)
            b.put(UInt16(52), at: 40); b.put(UInt16(phentsize), at: 42); b.put(UInt16(segments.count), at: 44)
        }
        for (i, (s, offset)) in zip(segments, offsets).enumerated() {
            let p = phoff + i * phentsize
            if is64 {
                b.put(s.type, at: p); b.put(UInt32(7), at: p + 4); b.put(UInt64(offset), at: p + 8)
                b.put(s.virtualAddress, at: p + 16); b.put(s.physicalAddress, at: p + 24)
                b.put(UInt64(s.data.count), at: p + 32); b.put(s.memorySize, at: p + 40); b.put(UInt64(0x1000), at: p + 48)
            } else {
                b.put(s.type, at: p); b.put(UInt32(offset), at: p + 4)
                b.put(UInt32(truncatingIfNeeded: s.virtualAddress), at: p + 8)
                b.put(UInt32(truncatingIfNeeded: s.physicalAddress), at: p + 12)
                b.put(UInt32(s.data.count), at: p + 16); b.put(UInt32(truncatingIfNeeded: s.memorySize), at: p + 20)
                b.put(UInt32(7), at: p + 24); b.put(UInt32(0x1000), at: p + 28)
            }
            b.replace(at: offset, with: s.data)
        }
        if let multiboot { b.replace(at: Self.multibootOffset, with: multiboot.bytes) }
        return b
    }

    /// File offset of program header `index`'s field at `field` bytes into the entry.
    func programHeaderField(_ index: Int, _ field: Int) -> Int { phoff + index * phentsize + field }
}

/// Recognisable bytes for segment contents.
func pattern(_ count: Int, seed: UInt8 = 1) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(seed)) | 1 }
}

/// A two-segment kernel at 1 MiB: text (0x3000 bytes of file, entry at +0x10) and data+bss at 2 MiB.
func sampleKernel(is64: Bool, multiboot: TestMultibootHeader? = TestMultibootHeader(),
                  virtualBase: UInt64 = 0) -> TestELF {
    TestELF(is64: is64, entry: virtualBase + 0x10_0010,
            segments: [TestSegment(at: 0x10_0000, virtual: virtualBase + 0x10_0000, data: pattern(0x3000)),
                       TestSegment(at: 0x20_0000, virtual: virtualBase + 0x20_0000, data: pattern(0x800, seed: 9),
                                   memorySize: 0x4000)],
            multiboot: multiboot)
}

/// A raw a.out-kludge image: the multiboot header at file offset `headerOffset`, loaded so the file's
/// first byte lands at `load`.
func aoutImage(load: UInt32 = 0x10_0000, fileSize: Int = 0x2000, bssSize: UInt32 = 0x3000,
               headerOffset: Int = 0x40, entryOffset: UInt32 = 0x100) -> [UInt8] {
    var b = pattern(fileSize, seed: 3)
    let loadEnd = load + UInt32(fileSize)
    let header = TestMultibootHeader(
        flags: MultibootHeader.flagPageAlignModules | MultibootHeader.flagAoutKludge,
        addresses: [load + UInt32(headerOffset), load, loadEnd, loadEnd + bssSize, load + entryOffset])
    b.replace(at: headerOffset, with: header.bytes)
    return b
}

extension Array where Element == UInt8 {
    mutating func le<T: FixedWidthInteger>(_ value: T) {
        for i in 0..<(T.bitWidth / 8) { append(UInt8(truncatingIfNeeded: value >> (i * 8))) }
    }
    mutating func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        for i in 0..<(T.bitWidth / 8) { self[offset + i] = UInt8(truncatingIfNeeded: value >> (i * 8)) }
    }
    mutating func replace(at offset: Int, with bytes: [UInt8]) {
        replaceSubrange(offset..<(offset + bytes.count), with: bytes)
    }
}

extension GuestMemory {
    func u8(_ a: UInt64) throws -> UInt8 { try load(UInt8.self, at: GuestPhysicalAddress(a)) }
    func u16(_ a: UInt64) throws -> UInt16 { try load(UInt16.self, at: GuestPhysicalAddress(a)) }
    func u32(_ a: UInt64) throws -> UInt32 { try load(UInt32.self, at: GuestPhysicalAddress(a)) }
    func u64(_ a: UInt64) throws -> UInt64 { try load(UInt64.self, at: GuestPhysicalAddress(a)) }
    func bytes(_ a: UInt64, _ count: Int) throws -> [UInt8] { try read(at: GuestPhysicalAddress(a), count: count) }

    /// The NUL-terminated string at `a` (at most 4 KiB).
    func cString(_ a: UInt64) throws -> String {
        var out: [UInt8] = []
        for i in 0..<UInt64(4096) {
            let c = try u8(a + i)
            if c == 0 { return String(decoding: out, as: UTF8.self) }
            out.append(c)
        }
        return "<unterminated>"
    }

    /// True when every byte of RAM is zero.
    func isAllZero() throws -> Bool {
        let chunk = 1 << 20
        let zeros = [UInt8](repeating: 0, count: chunk)
        for region in regions {
            var offset: UInt64 = 0
            while offset < region.size {
                let n = Int(Swift.min(UInt64(chunk), region.size - offset))
                let got = try read(at: GuestPhysicalAddress(region.guestStart.rawValue + offset), count: n)
                if got != (n == chunk ? zeros : Array(zeros[0..<n])) { return false }
                offset += UInt64(n)
            }
        }
        return true
    }
}

/// 8 MiB of fresh guest RAM.
func smallMemory(_ size: UInt64 = 8 << 20) throws -> GuestMemory { try GuestMemory(size: size) }

/// The error a load throws, or nil when it succeeds.
func loadError(_ kernel: [UInt8], commandLine: String = "", modules: [BootModule] = [],
               memory: GuestMemory) -> BootError? {
    do {
        _ = try BootLoader.load(kernel: kernel, commandLine: commandLine, modules: modules, into: memory)
        return nil
    } catch {
        return error
    }
}
