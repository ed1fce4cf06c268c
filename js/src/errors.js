/**
 * The runtime's error types, as in toolkit.errors: ToolkitError for bad arguments, ArtifactError for
 * an export directory that is missing, corrupt or inconsistent. Messages name the file or field and
 * the fix, in the Python runtime's words.
 */
export class ToolkitError extends Error {
  constructor(message) {
    super(message);
    this.name = "ToolkitError";
  }
}

export class ArtifactError extends ToolkitError {
  constructor(message) {
    super(message);
    this.name = "ArtifactError";
  }
}
