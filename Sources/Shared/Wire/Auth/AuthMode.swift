/// `HANDOFF_AUTH`: whether the API asks for keys. `off` serves anyone who can reach it, without limits — fine on
/// a laptop, dangerous on a network, so it is refused on a non-loopback address unless the operator says so.
package enum AuthMode: String, Sendable {
    case required
    case off

    /// The mode for an API bound to `host`; throws for `off` on a non-loopback address without
    /// `HANDOFF_AUTH_OFF_ALLOW_NETWORK=1`.
    package init(settings: Settings, host: String) throws(SettingsError) {
        let text = settings.string(.auth) ?? ""
        guard let mode = AuthMode(rawValue: text) else { throw .invalid(.auth, text) }
        if mode == .off, !Self.isLoopback(host), settings.string(.authOffAllowNetwork) != "1" {
            throw .refused(
                "HANDOFF_AUTH=off would let anyone who reaches \(host) use the models without a key; bind "
                    + "HANDOFF_API_HOST to a loopback address, use HANDOFF_AUTH=required, or set HANDOFF_AUTH_OFF_ALLOW_NETWORK=1"
            )
        }
        self = mode
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }
}
