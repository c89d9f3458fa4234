// Placeholder: the table-driven decoder arrives in this file.

/// Decodes x86 instructions from bytes, per the Intel SDM's opcode maps.
public enum Decoder {
    /// Decodes the instruction at the start of `bytes` (at most 15 are looked at) in `mode`.
    public static func decode(_ bytes: UnsafeRawBufferPointer, mode: CodeMode) -> DecodeResult {
        .undefined
    }

    /// The same, for an array (tests, tools).
    public static func decode(_ bytes: [UInt8], mode: CodeMode) -> DecodeResult {
        bytes.withUnsafeBytes { decode($0, mode: mode) }
    }
}
