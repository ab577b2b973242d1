extension Duration {
    /// The duration in whole milliseconds (truncated): what settings, headers and SQL intervals are written in.
    package var wholeMilliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}
