// The setup header of a Linux bzImage (the x86 Linux boot protocol, Documentation/arch/x86/boot.rst
// in the kernel's sources): what a 64-bit boot loader reads from it, checked field by field.
//
// A bzImage is a real-mode setup part of (setup_sects + 1) sectors of 512 bytes, whose header
// starts at file offset 0x1f1, followed by the protected-mode kernel (the decompressor with its
// compressed payload). A 64-bit loader copies the header into the zero page (`boot_params`), loads
// the protected-mode part, and jumps to its 64-bit entry 0x200 bytes in.

/// The setup header fields a 64-bit boot loader needs, read from a bzImage and validated.
public struct LinuxSetupHeader: Sendable, Equatable {
    // File (and zero-page) offsets of the header fields Visor reads or writes, after boot.rst.
    static let setupSectorsOffset = 0x1f1
    static let systemSizeOffset = 0x1f4
    static let bootFlagOffset = 0x1fe
    static let jumpOffset = 0x200
    static let signatureOffset = 0x202
    static let versionOffset = 0x206
    static let typeOfLoaderOffset = 0x210
    static let loadFlagsOffset = 0x211
    static let code32StartOffset = 0x214
    static let ramdiskImageOffset = 0x218
    static let ramdiskSizeOffset = 0x21c
    static let heapEndOffset = 0x224
    static let commandLinePointerOffset = 0x228
    static let initrdAddressMaxOffset = 0x22c
    static let kernelAlignmentOffset = 0x230
    static let relocatableOffset = 0x234
    static let extendedLoadFlagsOffset = 0x236
    static let commandLineSizeOffset = 0x238
    static let preferredAddressOffset = 0x258
    static let initSizeOffset = 0x260
    /// One past init_size, the last field Visor reads (protocol 2.10 and later have it).
    static let requiredHeaderEnd = 0x264
    /// The zero page's setup-header area ends where `edd_mbr_sig_buffer` starts.
    static let zeroPageHeaderLimit = 0x290

    /// 0xAA55 at 0x1fe, as in a boot sector.
    public static let bootFlag: UInt16 = 0xAA55
    /// "HdrS" at 0x202.
    public static let signature: UInt32 = 0x5372_6448
    /// The first protocol version with xloadflags and a 64-bit entry (2.12).
    public static let minimumVersion: UInt16 = 0x020c
    /// loadflags bit 0: the protected-mode kernel loads at 1 MiB or above (a bzImage).
    public static let loadedHigh: UInt8 = 1 << 0
    /// xloadflags bit 0: the kernel has the 64-bit entry at load address + 0x200.
    public static let kernel64: UInt16 = 1 << 0
    /// Offset of the 64-bit entry point (startup_64) from the load address.
    public static let entry64Offset: UInt64 = 0x200
    /// Where a kernel that names no preferred address loads (code32_start's traditional value).
    public static let traditionalLoadAddress: UInt64 = 0x10_0000

    /// The protocol version (0x020f is 2.15).
    public var version: UInt16
    /// File offset of the protected-mode kernel: (setup_sects + 1) * 512.
    public var protectedModeOffset: Int
    /// Bytes of the protected-mode kernel (syssize * 16).
    public var protectedModeSize: Int
    /// The header as the file has it, from 0x1f1 to its end (0x202 + the byte at 0x201).
    public var headerBytes: [UInt8]
    public var loadFlags: UInt8
    public var extendedLoadFlags: UInt16
    /// The highest address the initial RAM disk may occupy.
    public var initrdAddressMax: UInt32
    /// The alignment a relocatable kernel needs for its load address (a power of two).
    public var kernelAlignment: UInt32
    public var relocatable: Bool
    /// The longest command line the kernel takes, in bytes without the NUL.
    public var commandLineSize: UInt32
    /// Where the kernel prefers to run (LOAD_PHYSICAL_ADDR); 0 when it names none.
    public var preferredAddress: UInt64
    /// Bytes of contiguous memory the kernel needs from its load address before it reads its
    /// memory map (the decompressor's buffer).
    public var initSize: UInt32

    /// Whether `bytes` has a Linux setup header: the boot flag 0xAA55 at 0x1fe and "HdrS" at 0x202.
    public static func isPresent(in bytes: [UInt8]) -> Bool {
        guard bytes.count >= signatureOffset + 4 else { return false }
        let window = ByteWindow(bytes, at: 0)
        return window.u16(bootFlagOffset) == bootFlag && window.u32(signatureOffset) == signature
    }

    /// Reads and checks the header of a bzImage (one `isPresent` says has a header).
    public static func parse(_ bytes: [UInt8]) throws(BootError) -> LinuxSetupHeader {
        guard isPresent(in: bytes) else { throw .unrecognizedImage }
        guard bytes.count >= versionOffset + 2 else {
            throw .linuxImageTruncated(what: "setup header", needed: UInt64(versionOffset + 2), fileSize: bytes.count)
        }
        let window = ByteWindow(bytes, at: 0)
        let version = window.u16(versionOffset)
        guard version >= minimumVersion else { throw .linuxProtocolTooOld(version: version) }

        // The header's length is in the offset byte of the jump at 0x200.
        let headerEnd = signatureOffset + Int(bytes[jumpOffset + 1])
        guard headerEnd >= requiredHeaderEnd else {
            throw .linuxBadSetupHeader("it ends at \(hex(UInt64(headerEnd))), before init_size at \(hex(UInt64(initSizeOffset))), which protocol \(version >> 8).\(version & 0xff) has")
        }
        guard headerEnd <= zeroPageHeaderLimit else {
            throw .linuxBadSetupHeader("it claims to end at \(hex(UInt64(headerEnd))), past the zero page's header area (\(hex(UInt64(zeroPageHeaderLimit))))")
        }
        guard bytes.count >= headerEnd else {
            throw .linuxImageTruncated(what: "setup header", needed: UInt64(headerEnd), fileSize: bytes.count)
        }

        let loadFlags = bytes[loadFlagsOffset]
        guard loadFlags & loadedHigh != 0 else { throw .linuxNotBzImage }
        let extendedLoadFlags = window.u16(extendedLoadFlagsOffset)
        guard extendedLoadFlags & kernel64 != 0 else { throw .linuxNo64BitEntry }

        // setup_sects 0 means 4, for compatibility with the oldest images.
        let setupSectors = bytes[setupSectorsOffset] == 0 ? 4 : Int(bytes[setupSectorsOffset])
        let protectedModeOffset = (setupSectors + 1) * 512
        guard protectedModeOffset >= headerEnd else {
            throw .linuxBadSetupHeader("setup_sects \(setupSectors) puts the kernel at \(hex(UInt64(protectedModeOffset))), inside the setup header")
        }
        let protectedModeSize = Int(window.u32(systemSizeOffset)) * 16  // syssize < 2^32: no overflow in 64 bits
        guard protectedModeSize > 0 else { throw .linuxBadSetupHeader("syssize is 0: there is no protected-mode kernel") }
        guard protectedModeOffset + protectedModeSize <= bytes.count else {
            throw .linuxImageTruncated(what: "protected-mode kernel (syssize)",
                                       needed: UInt64(protectedModeOffset + protectedModeSize), fileSize: bytes.count)
        }
        guard UInt64(protectedModeSize) > entry64Offset else {
            throw .linuxBadSetupHeader("the protected-mode kernel (\(protectedModeSize) bytes) ends before its 64-bit entry at +0x200")
        }

        let kernelAlignment = window.u32(kernelAlignmentOffset)
        let relocatable = bytes[relocatableOffset] != 0
        if relocatable {
            guard kernelAlignment >= 0x1000, kernelAlignment & (kernelAlignment - 1) == 0 else {
                throw .linuxBadSetupHeader("kernel_alignment \(hex(UInt64(kernelAlignment))) is not a power of two of at least 4 KiB")
            }
        }
        let initSize = window.u32(initSizeOffset)
        guard UInt64(initSize) >= UInt64(protectedModeSize) else {
            throw .linuxBadSetupHeader("init_size \(hex(UInt64(initSize))) is smaller than the kernel it must hold (\(hex(UInt64(protectedModeSize))) bytes)")
        }
        return LinuxSetupHeader(
            version: version, protectedModeOffset: protectedModeOffset, protectedModeSize: protectedModeSize,
            headerBytes: Array(bytes[setupSectorsOffset..<headerEnd]), loadFlags: loadFlags,
            extendedLoadFlags: extendedLoadFlags, initrdAddressMax: window.u32(initrdAddressMaxOffset),
            kernelAlignment: kernelAlignment, relocatable: relocatable,
            commandLineSize: window.u32(commandLineSizeOffset), preferredAddress: window.u64(preferredAddressOffset),
            initSize: initSize)
    }

    /// Where the protected-mode kernel loads: its preferred address (a relocatable kernel runs
    /// there without moving; a non-relocatable one moves itself there anyway), else 1 MiB.
    public var loadAddress: UInt64 { preferredAddress != 0 ? preferredAddress : Self.traditionalLoadAddress }

    /// The memory the kernel uses from `loadAddress` before it reads the memory map: init_size
    /// bytes from the load address rounded up to kernel_alignment (where a relocatable kernel
    /// decompresses itself).
    public var runtimeEnd: UInt64? {
        let start = relocatable ? alignUp(loadAddress, UInt64(kernelAlignment)) : loadAddress
        return start?.checkedAdd(UInt64(initSize))
    }
}
