// GDT contents for the two protocols, as raw descriptor bytes. Access bytes set the accessed bit
// (code type 0xb, data type 0x3) so the descriptors match the segment caches `initialState` sets.

/// Flat 4 GiB ring-0 32-bit code: base 0, limit 0xfffff pages, access 0x9b, G=1 D=1.
let flatCode32Descriptor: UInt64 = 0x00CF_9B00_0000_FFFF
/// Flat ring-0 64-bit code: access 0x9b, G=1 L=1 D=0.
let flatCode64Descriptor: UInt64 = 0x00AF_9B00_0000_FFFF
/// Flat 4 GiB ring-0 read/write data: access 0x93, G=1 D/B=1.
let flatDataDescriptor: UInt64 = 0x00CF_9300_0000_FFFF

/// The multiboot GDT: null, code32 (0x08), data (0x10).
func protectedModeGDT() -> [UInt8] {
    var bytes: [UInt8] = []
    for descriptor in [0, flatCode32Descriptor, flatDataDescriptor] { bytes.appendLE(descriptor) }
    return bytes
}

/// The long-mode GDT: null, code64 (0x08), data (0x10), and the 16-byte TSS descriptor (0x18).
///
/// The TSS descriptor is marked busy (type 0xb), as it would be after `ltr`, so the GDT agrees
/// with the TR cache the initial state sets.
func longModeGDT(tssBase: UInt64, tssLimit: UInt32) -> [UInt8] {
    var bytes: [UInt8] = []
    for descriptor in [0, flatCode64Descriptor, flatDataDescriptor] { bytes.appendLE(descriptor) }
    let low = UInt64(tssLimit & 0xffff)
        | (tssBase & 0xff_ffff) << 16
        | UInt64(0x8b) << 40
        | UInt64((tssLimit >> 16) & 0xf) << 48
        | ((tssBase >> 24) & 0xff) << 56
    bytes.appendLE(low)
    bytes.appendLE(tssBase >> 32)
    return bytes
}

/// A 64-bit TSS with every stack pointer zero and no I/O permission bitmap (its base = the size).
func taskStateSegment(size: Int) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: size)
    bytes.putLE(UInt16(size), at: 102)
    return bytes
}

/// Identity map of [0, 4 GiB) with 2 MiB pages: PML4, PDPT and 4 page directories, consecutive
/// from `base`. Entries are present + writable; directory entries set PS.
func identityPageTables(base: UInt64, directories: UInt64) -> [UInt8] {
    let present: UInt64 = 1 << 0, writable: UInt64 = 1 << 1, largePage: UInt64 = 1 << 7
    let pdpt = base + 0x1000, firstDirectory = base + 0x2000
    var bytes = [UInt8](repeating: 0, count: Int(2 + directories) * 0x1000)
    bytes.putLE(pdpt | present | writable, at: 0)
    for gib in 0..<directories {
        bytes.putLE((firstDirectory + gib * 0x1000) | present | writable, at: 0x1000 + Int(gib) * 8)
        for entry in 0..<UInt64(512) {
            let physical = gib << 30 | entry << 21
            bytes.putLE(physical | present | writable | largePage, at: Int(0x2000 + gib * 0x1000 + entry * 8))
        }
    }
    return bytes
}
