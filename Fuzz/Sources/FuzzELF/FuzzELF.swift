// Fuzz target `elf`: the ELF32/ELF64 parser and the multiboot header search on any bytes.
//
// Input: the file. Invariants, beyond "never traps": a parsed image's segments lie inside the
// file with no overflow, none is empty or has more file bytes than memory bytes, there are no
// more than the limit, and the physical entry point is inside one of them when the entry is;
// a multiboot header found lies inside the search window.

import FuzzSupport
import VisorBoot

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzELF(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    var input = FuzzInput(data, count)
    let bytes = input.rest()
    if let image = try? ELFImage.parse(bytes) {
        require(image.segments.count == image.segmentIndices.count, "\(image.segments.count) segments, \(image.segmentIndices.count) indices")
        require(image.segments.count <= ELFImage.maximumProgramHeaders, "\(image.segments.count) segments")
        for segment in image.segments {
            let (end, overflow) = segment.fileOffset.addingReportingOverflow(segment.fileSize)
            require(!overflow && end <= UInt64(bytes.count), "segment \(segment) outside a \(bytes.count)-byte file")
            require(segment.memorySize > 0 && segment.fileSize <= segment.memorySize, "segment \(segment)")
        }
    }
    if let header = try? MultibootHeader.find(in: bytes) {
        require(header.offset >= 0 && header.offset + 12 <= min(bytes.count, MultibootHeader.searchLimit),
                "multiboot header at \(header.offset) of \(bytes.count) bytes")
    }
    return 0
}
