/* C targets need a source file; the header is the point. */
