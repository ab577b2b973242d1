#if canImport(Glibc)
    import Glibc
#endif

/// The process's open-file limit: every stream is a descriptor, and shells often start processes with a soft
/// limit of 1024 while the hard limit allows far more.
package enum OpenFiles {
    package static var hardLimit: Int {
        var limit = rlimit()
        getrlimit(resource, &limit)
        return Int(limit.rlim_max)
    }

    /// Raises the soft limit to the hard limit, the most an unprivileged process may hold.
    package static func raiseSoftLimit() {
        var limit = rlimit()
        getrlimit(resource, &limit)
        limit.rlim_cur = limit.rlim_max
        setrlimit(resource, &limit)
    }

    #if canImport(Glibc)
        private static let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    #else
        private static let resource = RLIMIT_NOFILE
    #endif
}
