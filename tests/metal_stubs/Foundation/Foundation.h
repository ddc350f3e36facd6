/* Minimal declarations of the Foundation API that kernels/metal/backend_metal.m
 * uses, so that clang can type-check it on Linux (make check-metal-syntax).
 * Not Apple's header: signatures copied from the Foundation documentation. */
#ifndef SS_STUB_FOUNDATION_H
#define SS_STUB_FOUNDATION_H
#include <stddef.h>
#include <stdint.h>
typedef unsigned long NSUInteger;
typedef long NSInteger;
typedef signed char BOOL;
#define YES ((BOOL)1)
#define NO ((BOOL)0)
#define nil ((id)0)
@protocol NSObject
- (id)retain;
- (oneway void)release;
- (id)autorelease;
@end
__attribute__((objc_root_class))
@interface NSObject <NSObject> {
    Class isa;
}
+ (id)alloc;
- (id)init;
@end
@interface NSString : NSObject
+ (id)stringWithUTF8String:(const char *)s;
- (const char *)UTF8String;
@end
@interface NSError : NSObject
- (NSString *)localizedDescription;
@end
@interface NSArray : NSObject
- (NSUInteger)count;
- (id)objectAtIndex:(NSUInteger)i;
- (id)initWithObjects:(id)first, ... __attribute__((sentinel));
@end
typedef struct {
    NSInteger majorVersion, minorVersion, patchVersion;
} NSOperatingSystemVersion;
@interface NSProcessInfo : NSObject
+ (NSProcessInfo *)processInfo;
- (NSOperatingSystemVersion)operatingSystemVersion;
@end
#endif
