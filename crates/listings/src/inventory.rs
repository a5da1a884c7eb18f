//! Units of inventory held by bookings: the `booked` availability windows.
