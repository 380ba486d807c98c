import Foundation

/// The package root, three levels above this file (Tests/TestSupport/Files.swift), for tests that read
/// the package's own files (systemd units, scripts, the test virtualenv).
public func packageRoot() -> URL {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}

/// A fresh folder under the system temporary directory, removed when `body` returns or throws, so a
/// test leaves nothing behind whatever its outcome. Its name says which test target and test made it.
public func withTemporaryDirectory<T>(_ label: String = #function, fileID: String = #fileID,
                                      _ body: (URL) throws -> T) throws -> T {
    let target = fileID.prefix(while: { $0 != "/" }).lowercased()
    let name = "earshot-\(target)-" + label.prefix(while: { $0.isLetter || $0.isNumber }) + "-" + UUID().uuidString
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(name, isDirectory: true)
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    return try body(dir)
}

/// Writes an Earshot manifest (path relative to the manifest's folder, TAB, text).
public func writeManifest(_ entries: [(file: URL, text: String)], to url: URL) throws {
    let base = url.deletingLastPathComponent().standardizedFileURL.path + "/"
    let lines = entries.map { e -> String in
        let path = e.file.standardizedFileURL.path
        return (path.hasPrefix(base) ? String(path.dropFirst(base.count)) : path) + "\t" + e.text + "\n"
    }
    try Data(lines.joined().utf8).write(to: url)
}

/// ALSA's `file` PCM standing in for a microphone, as the text of an asoundrc defining PCM `name`: it
/// reads `infile` (raw samples in whatever format, rate and channel count the capture asks for, since
/// its `null` slave accepts any) as the captured audio and `/dev/null` receives its copy. Real libasound,
/// no sound card. While `infile` does not exist the PCM fails to open, which is how tests make a
/// microphone "appear" later.
public func fileBackedPCMConfiguration(name: String, infile: String) -> String {
    """
    pcm.\(name) {
      type file
      slave.pcm null
      file "/dev/null"
      infile "\(infile)"
      format "raw"
    }

    """
}
