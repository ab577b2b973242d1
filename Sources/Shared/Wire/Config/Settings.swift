import Foundation

/// Typed access to the process environment by `ConfigKey`.
///
/// A value that is set but unparseable is an error at start-up, never silently replaced by the default.
package struct Settings: Sendable {
    package let environment: [String: String]

    package init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.environment = environment
    }

    package func string(_ key: ConfigKey) -> String? {
        if let value = environment[key.rawValue], !value.isEmpty { return value }
        return key.defaultValue
    }

    package func int(_ key: ConfigKey, override: Int? = nil) throws(SettingsError) -> Int {
        if let override { return override }
        guard let text = string(key) else { throw .missing(key) }
        guard let value = Int(text), value >= 0 else { throw .invalid(key, text) }
        return value
    }

    package func milliseconds(_ key: ConfigKey) throws(SettingsError) -> Duration {
        .milliseconds(try int(key))
    }

    package func seconds(_ key: ConfigKey) throws(SettingsError) -> Duration {
        .seconds(try int(key))
    }

    /// An `on`/`off` switch (unset: its default).
    package func isOn(_ key: ConfigKey) throws(SettingsError) -> Bool {
        switch string(key) {
        case "on", nil: true
        case "off": false
        case let value?: throw .invalid(key, value)
        }
    }

    package func list(_ key: ConfigKey) -> [String] {
        (string(key) ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }
}

package enum SettingsError: Error, CustomStringConvertible {
    case missing(ConfigKey)
    case invalid(ConfigKey, String)
    /// A combination of settings that is refused on purpose; the text says why and what to set instead.
    case refused(String)

    package var description: String {
        switch self {
        case .missing(let key): "\(key.rawValue) is not set"
        case .invalid(let key, let value): "\(key.rawValue)=\(value) is not a valid value"
        case .refused(let reason): reason
        }
    }
}
