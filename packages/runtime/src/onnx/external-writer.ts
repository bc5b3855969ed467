/**
 * Streams tensor data into one external data file (`model.onnx.data`),
 * tensor by tensor and chunk by chunk, so a multi-GB model is never held in
 * memory. Each tensor starts at an offset aligned to `alignment` bytes (so
 * onnxruntime can map it). The returned entries go into the TensorProto's
 * `external_data` with `data_location = EXTERNAL`.
 */
import { type FileHandle, open } from 'node:fs/promises';
import { basename } from 'node:path';
import type { ITensorProto } from './proto.js';
import { onnx } from './proto.js';

export class ExternalDataWriter {
  private fh: FileHandle | null = null;
  private pos = 0;
  private start = -1;
  readonly location: string;

  /** `path`: the data file (created or truncated); entries name it by its base name, relative to the model. */
  constructor(
    readonly path: string,
    readonly alignment = 4096,
  ) {
    this.location = basename(path);
  }

  async open(): Promise<void> {
    this.fh = await open(this.path, 'w');
    this.pos = 0;
  }

  /** Starts a tensor: pads to the alignment. */
  async begin(): Promise<void> {
    const fh = this.handle();
    if (this.start >= 0) throw new Error('ExternalDataWriter: begin() while a tensor is open');
    const aligned = Math.ceil(this.pos / this.alignment) * this.alignment;
    if (aligned > this.pos) {
      await fh.write(new Uint8Array(aligned - this.pos), 0, aligned - this.pos, this.pos);
      this.pos = aligned;
    }
    this.start = this.pos;
  }

  /** Appends bytes of the open tensor. */
  async write(bytes: Uint8Array): Promise<void> {
    const fh = this.handle();
    if (this.start < 0) throw new Error('ExternalDataWriter: write() with no open tensor');
    let off = 0;
    while (off < bytes.length) {
      const { bytesWritten } = await fh.write(bytes, off, bytes.length - off, this.pos);
      off += bytesWritten;
      this.pos += bytesWritten;
    }
  }

  /** Ends the open tensor and points `tensor` at its bytes. */
  end(tensor: ITensorProto): void {
    if (this.start < 0) throw new Error('ExternalDataWriter: end() with no open tensor');
    tensor.rawData = null;
    tensor.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
    tensor.externalData = [
      { key: 'location', value: this.location },
      { key: 'offset', value: String(this.start) },
      { key: 'length', value: String(this.pos - this.start) },
    ];
    this.start = -1;
  }

  /** Bytes written so far (the file's size). */
  get size(): number {
    return this.pos;
  }

  async close(): Promise<void> {
    if (this.fh) await this.fh.close();
    this.fh = null;
  }

  private handle(): FileHandle {
    if (!this.fh) throw new Error('ExternalDataWriter: not open');
    return this.fh;
  }
}
