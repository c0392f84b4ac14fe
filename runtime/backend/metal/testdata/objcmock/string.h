// string.h stand-in for the freestanding ObjC check.
#pragma once
#include <stddef.h>
void *memset(void *, int, size_t);
char *strncpy(char *, const char *, size_t);
