// Bit names of the control registers, EFER, RFLAGS and the MSR numbers the system side of
// the software CPU uses (Intel SDM Vol. 3A ch. 2, Vol. 4).

/// Control-register, EFER and RFLAGS bits, and MSR numbers.
public enum X86SystemBits {
    // CR0
    public static let cr0PE: UInt64 = 1 << 0, cr0MP: UInt64 = 1 << 1, cr0EM: UInt64 = 1 << 2
    public static let cr0TS: UInt64 = 1 << 3, cr0ET: UInt64 = 1 << 4, cr0NE: UInt64 = 1 << 5
    public static let cr0WP: UInt64 = 1 << 16, cr0AM: UInt64 = 1 << 18, cr0NW: UInt64 = 1 << 29
    public static let cr0CD: UInt64 = 1 << 30, cr0PG: UInt64 = 1 << 31
    /// The CR0 bits that exist; writes to the others in bits 31:0 are ignored.
    public static let cr0Defined: UInt64 = cr0PE | cr0MP | cr0EM | cr0TS | cr0ET | cr0NE | cr0WP | cr0AM
        | cr0NW | cr0CD | cr0PG

    // CR4
    public static let cr4TSD: UInt64 = 1 << 2, cr4DE: UInt64 = 1 << 3, cr4PSE: UInt64 = 1 << 4
    public static let cr4PAE: UInt64 = 1 << 5, cr4MCE: UInt64 = 1 << 6, cr4PGE: UInt64 = 1 << 7
    public static let cr4PCE: UInt64 = 1 << 8, cr4OSFXSR: UInt64 = 1 << 9, cr4OSXMMEXCPT: UInt64 = 1 << 10
    /// CR4 bits this CPU accepts; setting any other raises #GP(0) (no VME/PVI, UMIP, LA57,
    /// FSGSBASE, PCIDE, OSXSAVE, SMEP, SMAP, PKE: CPUID offers none of them).
    public static let cr4Supported: UInt64 = cr4TSD | cr4DE | cr4PSE | cr4PAE | cr4MCE | cr4PGE | cr4PCE
        | cr4OSFXSR | cr4OSXMMEXCPT

    // EFER
    public static let eferSCE: UInt64 = 1 << 0, eferLME: UInt64 = 1 << 8, eferLMA: UInt64 = 1 << 10
    public static let eferNXE: UInt64 = 1 << 11
    public static let eferSupported: UInt64 = eferSCE | eferLME | eferLMA | eferNXE

    // RFLAGS
    public static let flagCF: UInt64 = 1 << 0, flagZF: UInt64 = 1 << 6, flagTF: UInt64 = 1 << 8
    public static let flagIF: UInt64 = 1 << 9, flagDF: UInt64 = 1 << 10, flagOF: UInt64 = 1 << 11
    public static let flagIOPL: UInt64 = 3 << 12, flagNT: UInt64 = 1 << 14, flagRF: UInt64 = 1 << 16
    public static let flagVM: UInt64 = 1 << 17, flagAC: UInt64 = 1 << 18, flagVIF: UInt64 = 1 << 19
    public static let flagVIP: UInt64 = 1 << 20, flagID: UInt64 = 1 << 21
    /// Every RFLAGS bit software can change (CF PF AF ZF SF TF IF DF OF IOPL NT RF VM AC VIF VIP ID).
    public static let flagsWritable: UInt64 = 0x3f_7fd5

    // MSRs
    public static let msrTSC: UInt32 = 0x10
    public static let msrSysenterCS: UInt32 = 0x174, msrSysenterESP: UInt32 = 0x175, msrSysenterEIP: UInt32 = 0x176
    public static let msrPAT: UInt32 = 0x277
    public static let msrEFER: UInt32 = 0xc000_0080, msrSTAR: UInt32 = 0xc000_0081, msrLSTAR: UInt32 = 0xc000_0082
    public static let msrCSTAR: UInt32 = 0xc000_0083, msrSFMASK: UInt32 = 0xc000_0084
    public static let msrFSBase: UInt32 = 0xc000_0100, msrGSBase: UInt32 = 0xc000_0101
    public static let msrKernelGSBase: UInt32 = 0xc000_0102, msrTSCAux: UInt32 = 0xc000_0103
    public static let msrTSCAdjust: UInt32 = 0x3b
    /// Machine-check architecture with no error-reporting banks: IA32_MCG_CAP reads 0 (bank
    /// count 0, no IA32_MCG_CTL), IA32_MCG_STATUS holds RIPV/EIPV/MCIP (SDM Vol. 3B, "Machine-Check Architecture").
    public static let msrMCGCap: UInt32 = 0x179, msrMCGStatus: UInt32 = 0x17a
    public static let mcgStatusWritable: UInt64 = 0x7
    public static let msrMiscEnable: UInt32 = 0x1a0
    /// IA32_MISC_ENABLE bits: fast strings (0) and automatic thermal control (3) are read/write
    /// and have no effect a program can see on this CPU; branch trace storage (11) and PEBS (12)
    /// unavailable are read-only and set; performance monitoring available (7) is read-only and
    /// clear (CPUID leaf 0xA offers no PMU). Any other bit is reserved here: a write that changes
    /// a read-only or reserved bit raises #GP(0).
    public static let miscEnableFastStrings: UInt64 = 1 << 0, miscEnableThermalControl: UInt64 = 1 << 3
    public static let miscEnableBTSUnavailable: UInt64 = 1 << 11, miscEnablePEBSUnavailable: UInt64 = 1 << 12
    public static let miscEnableWritable: UInt64 = miscEnableFastStrings | miscEnableThermalControl
    public static let miscEnableReset: UInt64 = miscEnableFastStrings | miscEnableBTSUnavailable | miscEnablePEBSUnavailable
}
