import Foundation

/// Where the general English word LM is installed, for the decoders that use it when nothing else is
/// asked for (`earshot transcribe`, `earshotd`), so both find the same file by the same rule.
/// scripts/setup.sh compiles it into the user's cache; an install puts it under share/.
public enum GeneralLanguageModel {
    public static let fileName = "en-us.eslm"

    /// The places looked in, in order: the user's cache (`$XDG_CACHE_HOME`, else `~/.cache`), then
    /// `../share/earshot/lm` beside `executable`, then `/usr/local/share` and `/usr/share`.
    public static func candidates(environment: [String: String], home: String, executable: String) -> [String] {
        let cache = environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (home as NSString).appendingPathComponent(".cache")
        let exe = URL(fileURLWithPath: executable).resolvingSymlinksInPath().deletingLastPathComponent()
        return [
            (cache as NSString).appendingPathComponent("earshot/lm/\(fileName)"),
            exe.appendingPathComponent("../share/earshot/lm/\(fileName)").standardized.path,
            "/usr/local/share/earshot/lm/\(fileName)",
            "/usr/share/earshot/lm/\(fileName)",
        ]
    }

    /// The running program's file, for the paths looked up beside it: /proc/self/exe, which the kernel
    /// resolves whatever argv[0] says (`earshot` found on PATH gives a bare name, which would resolve
    /// against the working folder); argv[0] only where /proc is not mounted.
    public static var currentExecutable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// The general LM to decode with by default: `$EARSHOT_LM` when set (empty: none, so a test or a
    /// user can rule out whatever the machine has installed), else the first candidate that exists.
    public static func locate(environment: [String: String] = ProcessInfo.processInfo.environment,
                              home: String = NSHomeDirectory(),
                              executable: String = currentExecutable) -> String? {
        if let path = environment["EARSHOT_LM"] { return path.isEmpty ? nil : path }
        return candidates(environment: environment, home: home, executable: executable)
            .first { FileManager.default.fileExists(atPath: $0) }
    }
}
