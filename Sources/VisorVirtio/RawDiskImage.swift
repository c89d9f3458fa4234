// A raw disk image file: the bytes of the disk, sector 0 first, nothing else.

#if canImport(Glibc)
import Glibc
#endif
import CVisorHost

/// What went wrong opening or using a disk image. The description names the file.
public enum DiskImageError: Error, Equatable, Sendable, CustomStringConvertible {
    case missing(path: String)
    case isDirectory(path: String)
    case notRegularFile(path: String)
    case cannotOpen(path: String, readOnly: Bool, errno: Int32)
    case ioFailed(path: String, operation: String, errno: Int32)

    public var description: String {
        switch self {
        case .missing(let path): return "disk image \(path) does not exist"
        case .isDirectory(let path): return "disk image \(path) is a directory, not a file"
        case .notRegularFile(let path): return "disk image \(path) is not a regular file"
        case .cannotOpen(let path, let readOnly, let code):
            return "cannot open disk image \(path) for \(readOnly ? "reading" : "reading and writing"): \(String(cString: strerror(code)))"
        case .ioFailed(let path, let operation, let code):
            return "disk image \(path): \(operation) failed: \(String(cString: strerror(code)))"
        }
    }
}

/// The storage a virtio-blk device reads and writes.
public protocol BlockStorage: AnyObject, Sendable {
    /// Size in bytes.
    var byteCount: UInt64 { get }
    var isReadOnly: Bool { get }
    func read(at offset: UInt64, count: Int) throws(DiskImageError) -> [UInt8]
    func write(_ bytes: [UInt8], at offset: UInt64) throws(DiskImageError)
    /// Returns once everything written before is on stable storage.
    func flush() throws(DiskImageError)
    /// Forgets the range (it reads back as zeroes).
    func discard(at offset: UInt64, count: UInt64) throws(DiskImageError)
}

/// A raw image file opened for the life of the device. Used by one worker thread at a time
/// (the device's); pread/pwrite carry their own offsets, so no state is shared between calls.
public final class RawDiskImage: BlockStorage, @unchecked Sendable {
    public let path: String
    public let byteCount: UInt64
    public let isReadOnly: Bool
    private let descriptor: Int32

    /// Opens `path`: a missing file, a directory or a file without the permission asked for is
    /// an error naming the problem.
    public init(path: String, readOnly: Bool) throws(DiskImageError) {
        var info = stat()
        guard stat(path, &info) == 0 else {
            if errno == ENOENT || errno == ENOTDIR { throw .missing(path: path) }
            throw .cannotOpen(path: path, readOnly: readOnly, errno: errno)
        }
        if info.st_mode & S_IFMT == S_IFDIR { throw .isDirectory(path: path) }
        guard info.st_mode & S_IFMT == S_IFREG else { throw .notRegularFile(path: path) }
        let fd = open(path, (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC)
        guard fd >= 0 else { throw .cannotOpen(path: path, readOnly: readOnly, errno: errno) }
        self.path = path
        self.descriptor = fd
        self.isReadOnly = readOnly
        self.byteCount = UInt64(max(info.st_size, 0))
    }

    deinit { close(descriptor) }

    public func read(at offset: UInt64, count: Int) throws(DiskImageError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let result = bytes.withUnsafeMutableBytes { buffer in
                // SAFETY: the pointer and length stay inside `bytes`' storage (done < count).
                pread(descriptor, buffer.baseAddress.map { $0 + done }, count - done, off_t(offset) + off_t(done))
            }
            if result < 0 {
                if errno == EINTR { continue }
                throw .ioFailed(path: path, operation: "read", errno: errno)
            }
            if result == 0 { break }  // past the end of the file: zeroes, as a sparse image reads
            done += result
        }
        return bytes
    }

    public func write(_ bytes: [UInt8], at offset: UInt64) throws(DiskImageError) {
        var done = 0
        while done < bytes.count {
            let result = bytes.withUnsafeBytes { buffer in
                // SAFETY: the pointer and length stay inside `bytes`' storage (done < count).
                pwrite(descriptor, buffer.baseAddress.map { $0 + done }, bytes.count - done, off_t(offset) + off_t(done))
            }
            if result < 0 {
                if errno == EINTR { continue }
                throw .ioFailed(path: path, operation: "write", errno: errno)
            }
            done += result
        }
    }

    public func flush() throws(DiskImageError) {
        while fsync(descriptor) != 0 {
            guard errno == EINTR else { throw .ioFailed(path: path, operation: "fsync", errno: errno) }
        }
    }

    public func discard(at offset: UInt64, count: UInt64) throws(DiskImageError) {
        if cvisorhost_punch_hole(descriptor, Int64(offset), Int64(count)) == 0 { return }
        // A file system without holes: write zeroes instead, a chunk at a time.
        let chunk = 1 << 20
        var position = offset
        let end = offset + count
        while position < end {
            let length = Int(min(UInt64(chunk), end - position))
            try write([UInt8](repeating: 0, count: length), at: position)
            position += UInt64(length)
        }
    }
}
