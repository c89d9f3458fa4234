// Why a run cannot start (`Launcher`): bad input, a bad option, or a built-in guest that cannot
// be had, each with the exit status `visor run` gives for it.

/// Problems found before the guest starts.
enum LaunchError: Error, CustomStringConvertible {
    case badInput(String)
    case badOption(String)
    case guest(GuestCatalogError)

    var description: String {
        switch self {
        case .badInput(let m), .badOption(let m): return m
        case .guest(let e): return e.description
        }
    }

    var exitStatus: Int32 {
        switch self {
        case .badOption: return ExitStatus.badOption
        case .badInput: return ExitStatus.badInput
        case .guest(.unknownGuest): return ExitStatus.badInput
        case .guest(.notFetched), .guest(.notFound): return ExitStatus.unavailable
        case .guest: return ExitStatus.internalFailure
        }
    }
}
