// Helpers shared by the port-mapped device models.

/// All ones in the low `size` bytes of a port access: what an undecoded ISA port reads as.
/// Every bit for sizes of 4 and more, none for a (nonsensical) size of 0.
func allOnes(size: UInt8) -> UInt32 {
    size >= 4 ? 0xffff_ffff : (UInt32(1) << (UInt32(size) * 8)) &- 1
}
