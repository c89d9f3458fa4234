// What creating a domain can refuse.

/// Errors creating a domain that are the configuration's fault.
public enum DomainError: Error, CustomStringConvertible {
    case invalidVCPUCount(Int)

    public var description: String {
        switch self {
        case .invalidVCPUCount(let n):
            return "a domain needs 1 to \(Domain.maximumVCPUs) vCPUs, not \(n)"
        }
    }
}
