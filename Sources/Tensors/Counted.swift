/// A count with its noun for messages a person reads: "1 utterance", "2 utterances".
public func counted(_ n: Int, _ singular: String, plural: String? = nil) -> String {
    "\(n) \(n == 1 ? singular : plural ?? singular + "s")"
}
