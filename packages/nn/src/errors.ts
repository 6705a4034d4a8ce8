/**
 * Checkpoint errors. They extend the backend's ArgumentError (code INVALID_ARGUMENT), so
 * callers that switch on `code` treat a bad checkpoint like any bad argument, and each names
 * the tensor, file or config field at fault.
 */
import { ArgumentError } from '@longseq/backend';

/** A tensor the model needs is not in the checkpoint. */
export class MissingTensorError extends ArgumentError {
  constructor(
    readonly tensor: string,
    readonly where: string,
  ) {
    super(tensor, `a tensor in ${where}`, 'no such tensor');
  }
}

/** A file the checkpoint needs (model.safetensors, a shard, config.json) is missing or unreadable. */
export class MissingFileError extends ArgumentError {
  constructor(
    readonly file: string,
    readonly where: string,
    readonly reason = 'no such file',
  ) {
    super(file, `a file in ${where}`, reason);
  }
}

/** A safetensors file (or index) is malformed: bad header, offsets outside the data. */
export class SafetensorsFormatError extends ArgumentError {
  constructor(
    readonly file: string,
    readonly problem: string,
  ) {
    super(file, 'a valid safetensors file', problem);
  }
}

/** A config.json field is missing, of the wrong type, or has a value the model does not support. */
export class ConfigError extends ArgumentError {
  constructor(
    readonly field: string,
    expected: string,
    actual: unknown,
  ) {
    super(`config.json: ${field}`, expected, actual);
  }
}
